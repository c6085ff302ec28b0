"""The one shape of every plugin registry (path selectors, checkers, prioritizers, hardware handlers):
the multipath.conf name of each plugin -> its class.

A plugin class has a ``name`` (how multipath.conf spells it) and ``options``: the settings (``keys.KEYS``
names) its constructor takes as keyword arguments; it is built with those and nothing else, so one call
builds any plugin of any registry. multipath.conf may write a name followed by its arguments, as DM does
("round-robin 0"): a name is looked up by its first word.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, Protocol, TypeVar


class Plugin(Protocol):
    name: str
    options: tuple[str, ...]


P = TypeVar("P", bound=Plugin)


class Registry(Mapping[str, type[P]], Generic[P]):
    """``key`` is the multipath.conf key that chooses one of ``classes`` (e.g. "path_checker")."""

    def __init__(self, key: str, *classes: type[P]) -> None:
        self.key = key
        self._classes = {cls.name: cls for cls in classes}
        assert len(self._classes) == len(classes), f"{key}: two plugins share a name"

    def __getitem__(self, name: str) -> type[P]:
        words = name.split()
        return self._classes[words[0] if words else name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._classes)

    def __len__(self) -> int:
        return len(self._classes)

    def make(self, name: str, **settings: Any) -> P:
        """A new ``name`` plugin, given the ``settings`` it declares in its ``options`` (others are
        ignored; plugins keep state, so every device builds its own). ``ValueError`` names the key and
        the choices when there is no such plugin."""
        try:
            cls = self[name]
        except KeyError:
            raise ValueError(f"{self.key} {name!r}: use one of {', '.join(self)}") from None
        build: Callable[..., P] = cls
        return build(**{option: settings[option] for option in cls.options if option in settings})
