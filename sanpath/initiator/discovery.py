"""SendTargets discovery (RFC 7143 §12.3, Appendix C) on one or several portals, as the seed's "Target
Host" box takes them (a comma-separated list), with CHAP on the discovery session."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

from ..errors import IscsiError
from .session import Session, SessionConfig
from .url import parse_host_port


@dataclass(frozen=True, slots=True, order=True)
class DiscoveredTarget:
    """One (portal, IQN) record: what a normal session logs in to."""

    address: str
    port: int
    tpgt: int
    iqn: str

    @property
    def portal(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"


def parse_portals(text: str) -> list[tuple[str, int]]:
    """'a[:p],b[:p]' -> [(a, p), (b, p)] (port 3260 when absent)."""
    out = [parse_host_port(part.strip(), what="portal") for part in text.split(",") if part.strip()]
    if not out:
        raise ValueError("no portal given; write HOST[:PORT][,HOST[:PORT]...]")
    return out


def parse_send_targets(pairs: list[tuple[str, str]], via: tuple[str, int]) -> list[DiscoveredTarget]:
    """TargetName starts a record; each TargetAddress ``addr[:port][,tpgt]`` after it adds a portal. A
    target listed with no address is reachable where discovery ran (Appendix C)."""
    out: list[DiscoveredTarget] = []
    name: str | None = None
    seen_address = False

    def close_record() -> None:
        if name is not None and not seen_address:
            out.append(DiscoveredTarget(via[0], via[1], 1, name))

    for key, value in pairs:
        if key == "TargetName":
            close_record()
            name, seen_address = value, False
        elif key == "TargetAddress" and name is not None:
            addr, _, tag = value.partition(",")
            host, port = parse_host_port(addr, what="TargetAddress")
            out.append(DiscoveredTarget(host, port, int(tag) if tag.isdigit() else 1, name))
            seen_address = True
    close_record()
    return out


async def discover_one(config: SessionConfig) -> list[DiscoveredTarget]:
    session = await Session.open(config)
    try:
        pairs = await session.text([("SendTargets", "All")])
    finally:
        await session.logout()
    return parse_send_targets(pairs, (config.host, config.port))


async def discover(portals: str | list[tuple[str, int]], config: SessionConfig | None = None,
                   ) -> tuple[list[DiscoveredTarget], dict[str, IscsiError]]:
    """Discover on every portal at once. Returns the merged, sorted records and the errors per portal
    (a multi-IQN array needs every address asked; one unreachable portal does not hide the others)."""
    if isinstance(portals, str):
        portals = parse_portals(portals)
    base = config or SessionConfig(host="", nop_interval=0)
    configs = [replace(base, host=h, port=p, target=None) for h, p in portals]
    results = await asyncio.gather(*(discover_one(c) for c in configs), return_exceptions=True)
    records: set[DiscoveredTarget] = set()
    errors: dict[str, IscsiError] = {}
    for c, r in zip(configs, results, strict=True):
        if isinstance(r, IscsiError):
            errors[c.portal] = r
        elif isinstance(r, BaseException):
            raise r
        else:
            records.update(r)
    return sorted(records), errors
