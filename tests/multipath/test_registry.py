"""The plugin registries share one shape: name -> class, looked up by the first word of a
multipath.conf value, built with the settings each class declares and nothing else."""

from __future__ import annotations

from typing import Any

import pytest

from sanpath.multipath.checkers import CHECKERS, TurChecker
from sanpath.multipath.handlers import HANDLERS, RdacHandler
from sanpath.multipath.keys import KEYS
from sanpath.multipath.policy import Policy
from sanpath.multipath.prioritizers import PRIORITIZERS
from sanpath.multipath.registry import Registry
from sanpath.multipath.selectors import SELECTORS, QueueLength, RoundRobin

REGISTRIES: list[Registry[Any]] = [SELECTORS, CHECKERS, PRIORITIZERS, HANDLERS]


@pytest.mark.parametrize("registry", REGISTRIES, ids=lambda r: r.key)
def test_every_plugin_is_listed_under_its_name_and_builds_from_a_policy(registry: Registry[Any]) -> None:
    assert registry.key in KEYS
    policy = Policy(rr_min_io=4)
    for name in registry:
        cls = registry[name]
        assert cls.name == name and set(cls.options) <= set(KEYS)
        plugin = registry.make(name, **policy.values())
        assert type(plugin) is cls
        for option in cls.options:
            assert getattr(plugin, option) == getattr(policy, option)


@pytest.mark.parametrize("registry", REGISTRIES, ids=lambda r: r.key)
def test_every_configurable_value_names_a_plugin(registry: Registry[Any]) -> None:
    parse = KEYS[registry.key].parse
    for name in registry:
        assert registry[parse("test", name)] is registry[name]


def test_lookup_takes_the_first_word() -> None:
    assert SELECTORS["round-robin 0"] is SELECTORS["round-robin"] is RoundRobin
    assert CHECKERS["tur"] is TurChecker and HANDLERS["rdac"] is RdacHandler
    with pytest.raises(KeyError):
        SELECTORS[""]


def test_make_passes_only_the_declared_options() -> None:
    rr = SELECTORS.make("round-robin 0", rr_min_io=7, prio="alua")
    assert isinstance(rr, RoundRobin) and rr.rr_min_io == 7
    assert isinstance(SELECTORS.make("queue-length 0", rr_min_io=7), QueueLength)  # takes no options
    rr = SELECTORS.make("round-robin")
    assert isinstance(rr, RoundRobin) and rr.rr_min_io == 1  # the class default


def test_unknown_name_names_the_key_and_the_choices() -> None:
    with pytest.raises(ValueError, match=r"prio 'aula': use one of const, alua, rdac"):
        PRIORITIZERS.make("aula")
    with pytest.raises(ValueError, match=r"handler 'emc': use one of dmp, rdac"):
        HANDLERS.make("emc")

