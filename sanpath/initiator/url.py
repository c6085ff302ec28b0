"""iSCSI URLs in the form libiscsi and QEMU use:
``iscsi://[user[%password]@]host[:port]/<target-iqn>/<lun>`` (IPv6 hosts in brackets)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from urllib.parse import unquote

from ..errors import ConfigError
from ..iscsi.constants import DEFAULT_PORT


@dataclass(frozen=True, slots=True)
class IscsiUrl:
    host: str
    port: int = DEFAULT_PORT
    target: str = ""
    lun: int = 0
    user: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def portal(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        auth = f"{self.user}@" if self.user else ""
        return f"iscsi://{auth}{self.portal}/{self.target}/{self.lun}"


def parse_host_port(text: str, *, what: str = "portal") -> tuple[str, int]:
    """'host', 'host:port', '[v6]', '[v6]:port' -> (host, port)."""
    host, port = text, DEFAULT_PORT
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ConfigError(what, f"{text!r}: unclosed '[' in an IPv6 address")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                raise ConfigError(what, f"{text!r}: expected ':PORT' after ']'")
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, p = text.split(":")
        if not p.isdigit():
            raise ConfigError(what, f"{text!r}: port must be a number")
        port = int(p)
    elif text.count(":") > 1:
        ipaddress.IPv6Address(text)  # a bare IPv6 address
    if not host:
        raise ConfigError(what, f"{text!r}: no host")
    if not 1 <= port <= 65535:
        raise ConfigError(what, f"{text!r}: port {port} out of range 1..65535")
    return host, port


def parse_url(text: str, *, need_lun: bool = True) -> IscsiUrl:
    """Parse an iscsi:// URL; errors say what part is wrong and show the expected form."""
    form = "iscsi://[user[%password]@]host[:port]/<target-iqn>/<lun>"
    if not text.startswith("iscsi://"):
        raise ConfigError("url", f"{text!r} is not an iSCSI URL; expected {form}")
    rest = text[len("iscsi://") :]
    user = password = None
    if "@" in rest.split("/", 1)[0]:
        auth, rest = rest.split("@", 1)
        user, _, pw = auth.partition("%")
        user = unquote(user)
        password = unquote(pw) if pw else None
    hostport, _, path = rest.partition("/")
    host, port = parse_host_port(hostport, what="url")
    parts = [p for p in path.split("/") if p] if path else []
    if need_lun and len(parts) != 2:
        raise ConfigError("url", f"{text!r}: expected {form}")
    target = unquote(parts[0]) if parts else ""
    lun = 0
    if len(parts) > 1:
        if not parts[1].isdigit() or int(parts[1]) > 16383:
            raise ConfigError("url", f"{text!r}: LUN must be a number 0..16383")
        lun = int(parts[1])
    return IscsiUrl(host, port, target, lun, user, password)
