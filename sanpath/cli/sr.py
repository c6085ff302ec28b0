"""``sanpath sr probe|create|list|show|forget|destroy``: storage repositories on iSCSI LUNs, created
through the design guide's workflow (discover IQNs, pick one or ``*``, pick the LUN, create; every host
of the pool plugs it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from ..mgmt.client import ApiClient, api_option, emit, format_option, read_secret, run
from .options import CHAP_SECRET_ENV, TARGET_CHAP_SECRET_ENV

SR_COLUMNS = [("UUID", lambda s: s["uuid"]), ("NAME", lambda s: s["name_label"]), ("SCSIid", lambda s: s["SCSIid"]),
              ("TARGET", lambda s: s["device_config"].get("target")),
              ("IQN", lambda s: s["device_config"].get("targetIQN"))]
IQN_COLUMNS = [("INDEX", lambda r: r["index"]), ("ADDRESS", lambda r: r["address"]), ("PORT", lambda r: r["port"]),
               ("IQN", lambda r: r["iqn"])]
LUN_COLUMNS = [("SCSIid", lambda r: r["SCSIid"]), ("LUNid", lambda r: r["LUNid"]), ("SIZE", lambda r: r["size"]),
               ("VENDOR", lambda r: r["vendor"]), ("SERIAL", lambda r: r["serial"] or "-"),
               ("PORTALS", lambda r: ",".join(r["portals"]))]
PBD_COLUMNS = [("HOST", lambda p: p["host"]), ("PBD", lambda p: p["uuid"]),
               ("STATE", lambda p: p["state"]),
               ("PATHS", lambda p: next((v for k, v in p["other_config"].items() if k.startswith("mpath-")), "-")),
               ("ERROR", lambda p: (p["error"] or {}).get("message"))]


def target_options(f: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--target", required=True, metavar="ADDR[,ADDR...]",
                     help="The array's addresses (all of them for an array that returns several IQNs)."),
        click.option("--port", type=int, default=3260, show_default=True),
        click.option("--chap-user", default="", help="CHAP user name this host logs in as."),
        click.option("--chap-secret-file", type=click.Path(dir_okay=False),
                     help=f"File holding the CHAP secret (else ${CHAP_SECRET_ENV}); never an option value."),
        click.option("--target-chap-user", default="", help="Mutual CHAP: the name the target answers with."),
        click.option("--target-chap-secret-file", type=click.Path(dir_okay=False),
                     help=f"Mutual CHAP: the target's secret (else ${TARGET_CHAP_SECRET_ENV})."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _body(kw: dict[str, Any], iqn: str | None, scsi_id: str | None) -> dict[str, Any]:
    return {"target": kw["target"], "port": kw["port"], "targetIQN": iqn or "", "SCSIid": scsi_id or "",
            "chapuser": kw["chap_user"], "chappassword": read_secret(kw["chap_secret_file"], CHAP_SECRET_ENV)
            if kw["chap_user"] else "",
            "incoming_chapuser": kw["target_chap_user"],
            "incoming_chappassword": read_secret(kw["target_chap_secret_file"], TARGET_CHAP_SECRET_ENV)
            if kw["target_chap_user"] else ""}


@click.group()
def sr() -> None:
    """Storage repositories (SRs) on iSCSI LUNs."""


@sr.command("probe")
@target_options
@click.option("--iqn", help="The target IQN, or * (then: the LUNs behind it).")
@click.option("--scsi-id", help="With --iqn: the LUN (then: the SRs already on it).")
@api_option
@format_option("table", "json", "xml")
def probe(iqn: str | None, scsi_id: str | None, api: str | None, fmt: str, **kw: Any) -> None:
    """Discover the IQNs of the targets (all of them), then the LUNs behind an IQN, then the SRs on a LUN;
    --format xml prints what XenServer's sr-probe returns at each stage."""

    def go() -> None:
        result = ApiClient(api).call("POST", "/sr/probe", body=_body(kw, iqn, scsi_id))
        if fmt == "xml":
            click.echo(result["xml"], nl=False)
        elif fmt == "json":
            emit(result, fmt)
        elif result["stage"] == "iqns":
            emit(result["iqns"], fmt, IQN_COLUMNS)
            click.echo("(* logs in to every IQN listed: choose it for an array that returns one IQN per port)")
        elif result["stage"] == "luns":
            emit(result["luns"], fmt, LUN_COLUMNS)
        else:
            emit(result["srs"], fmt, [("UUID", lambda s: s["uuid"]), ("TARGET", lambda s: s["target"]),
                                      ("IQN", lambda s: s["targetIQN"])])

    run("sr probe", go)


@sr.command("create")
@click.option("--name", "name_label", required=True)
@target_options
@click.option("--iqn", required=True, help="The target IQN, or * for every IQN discovered.")
@click.option("--scsi-id", required=True, help="The LUN (sanpath sr probe --iqn IQN lists them).")
@click.option("--multihomed", type=click.Choice(["auto", "true", "false"]), default="auto", show_default=True,
              help="Log in to every portal (auto: when the host's multipathing is on).")
@click.option("--strict", is_flag=True, help="Refuse, rather than warn, when multipathing is not the same on "
              "every host of the pool.")
@api_option
@format_option("table", "json")
def create(name_label: str, iqn: str, scsi_id: str, multihomed: str, strict: bool, api: str | None, fmt: str,
           **kw: Any) -> None:
    """Create the SR, make a PBD on every host of the pool and plug it; prints the SR's uuid."""

    def go() -> None:
        result = ApiClient(api).call("POST", "/srs", body={**_body(kw, iqn, scsi_id), "name_label": name_label,
                                                           "multihomed": multihomed, "strict": strict})
        if fmt == "json":
            emit(result, fmt)
            return
        for warning in result["warnings"]:
            click.echo(f"warning: {warning}", err=True)
        click.echo(result["uuid"])
        for p in result["pbds"]:
            if p["error"]:
                click.echo(f"warning: host {p['host']} could not plug PBD {p['uuid']}: {p['error']['error']}: "
                           f"{p['error']['message']}", err=True)

    run("sr create", go)


@sr.command("list")
@api_option
@format_option("table", "json")
def list_srs(api: str | None, fmt: str) -> None:
    """Every SR of the pool."""
    run("sr list", lambda: emit(ApiClient(api).call("GET", "/srs"), fmt, SR_COLUMNS))


@sr.command("show")
@click.argument("uuid")
@api_option
@format_option("table", "json")
def show(uuid: str, api: str | None, fmt: str) -> None:
    """One SR with its PBDs."""

    def go() -> None:
        result = ApiClient(api).call("GET", f"/srs/{uuid}")
        emit(result, fmt, SR_COLUMNS)
        if fmt == "table":
            click.echo("")
            emit(result["pbds"], fmt, PBD_COLUMNS)

    run("sr show", go)


@sr.command("forget")
@click.argument("uuid")
@api_option
def forget(uuid: str, api: str | None) -> None:
    """Drop the SR's records (refused while a PBD is plugged); the LUN is left as it is."""
    run("sr forget", lambda: ApiClient(api).call("POST", f"/srs/{uuid}/forget") and None)


@sr.command("destroy")
@click.argument("uuid")
@api_option
def destroy(uuid: str, api: str | None) -> None:
    """Destroy the SR (refused while any PBD is plugged). sanpath keeps nothing on the LUN, so this drops
    the records and secrets, like forget; the LUN's data is not touched."""
    run("sr destroy", lambda: ApiClient(api).call("DELETE", f"/srs/{uuid}") and None)
