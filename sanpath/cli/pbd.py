"""``sanpath pbd list|plug|unplug``: the PBDs (an SR's connection on one host)."""

from __future__ import annotations

from typing import Any

import click

from ..mgmt.client import ApiClient, api_option, emit, format_option, run


def _paths(p: dict[str, Any]) -> str:
    """XenCenter's "n of m paths active (k iSCSI sessions)"."""
    counts = next((v for k, v in p["other_config"].items() if k.startswith("mpath-")), None)
    if p["state"] != "attached" or counts is None:
        return "-"
    active, _, maximum = str(counts).strip("[]").partition(",")
    return f"{active.strip()} of {maximum.strip()} ({p['other_config'].get('iscsi_sessions', '?')} sessions)"


PBD_COLUMNS = [("UUID", lambda p: p["uuid"]), ("SR", lambda p: p["sr"]), ("HOST", lambda p: p["host"]),
               ("STATE", lambda p: p["state"]), ("PATHS", _paths), ("NBD", lambda p: p["nbd"]),
               ("ERROR", lambda p: (p["error"] or {}).get("error"))]


@click.group()
def pbd() -> None:
    """PBDs: how each host is connected to each SR."""


@pbd.command("list")
@click.option("--sr", "sr_uuid", help="Only this SR's PBDs.")
@click.option("--host", "ref", help="Only this host's PBDs (name or uuid).")
@api_option
@format_option("table", "json")
def list_pbds(sr_uuid: str | None, ref: str | None, api: str | None, fmt: str) -> None:
    """PBDs with their state, path counts ("n of m"), sessions and export."""
    run("pbd list", lambda: emit(ApiClient(api).call("GET", "/pbds", params={"sr": sr_uuid, "host": ref}), fmt,
                                 PBD_COLUMNS))


@pbd.command("plug")
@click.argument("uuid")
@api_option
@format_option("table", "json")
def plug(uuid: str, api: str | None, fmt: str) -> None:
    """Attach the SR on the PBD's host: every path logged in, the multipath device, the NBD export."""
    run("pbd plug", lambda: emit(ApiClient(api).call("POST", f"/pbds/{uuid}/plug"), fmt, PBD_COLUMNS))


@pbd.command("unplug")
@click.argument("uuid")
@click.option("--force", is_flag=True, help="Unplug even while NBD clients are connected to the export.")
@api_option
@format_option("table", "json")
def unplug(uuid: str, force: bool, api: str | None, fmt: str) -> None:
    """Detach: stop the export (refused while NBD clients are connected, unless --force), flush, log out."""
    run("pbd unplug", lambda: emit(ApiClient(api).call("POST", f"/pbds/{uuid}/unplug", body={"force": force}),
                                   fmt, PBD_COLUMNS))
