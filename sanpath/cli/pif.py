"""``sanpath pif list|set-purpose``: the host's network interfaces, as the daemon reads them through
netlink, and which of them carry storage traffic."""

from __future__ import annotations

import click

from ..mgmt.client import ApiClient, api_option, emit, format_option, run

PIF_COLUMNS = [("DEVICE", lambda p: p["device"]), ("PURPOSE", lambda p: p["purpose"]),
               ("ADDRESSES", lambda p: ",".join(p["addresses"]) or "-"), ("CARRIER", lambda p: p["carrier"]),
               ("KIND", lambda p: p["kind"] or "-"), ("MASTER", lambda p: p["master"] or "-"),
               ("MTU", lambda p: p["mtu"]), ("PRESENT", lambda p: p["present"]), ("UUID", lambda p: p["uuid"])]


@click.group()
def pif() -> None:
    """The host's network interfaces (PIFs)."""


@pif.command("list")
@click.option("--host", "ref", help="The host (default: the daemon's own).")
@api_option
@format_option("table", "json")
def list_pifs(ref: str | None, api: str | None, fmt: str) -> None:
    """Every PIF of the host with its purpose, addresses and link state."""
    run("pif list", lambda: emit(ApiClient(api).call("GET", "/pifs", params={"host": ref}), fmt, PIF_COLUMNS))


@pif.command("set-purpose")
@click.argument("device")
@click.argument("purpose", type=click.Choice(["storage", "management", "none"]))
@click.option("--host", "ref", help="The host (default: the daemon's own).")
@api_option
@format_option("table", "json")
def set_purpose(device: str, purpose: str, ref: str | None, api: str | None, fmt: str) -> None:
    """Mark DEV as a storage NIC (its subnet's portals get a path from it), management, or none."""
    run("pif set-purpose", lambda: emit(ApiClient(api).call("POST", f"/pifs/{device}/purpose",
                                                            body={"purpose": purpose}, params={"host": ref}),
                                        fmt, PIF_COLUMNS))
