"""``sanpath target ...``: run the software array (``serve``), inject faults into a running one
(``fault``) and read its counters (``status``) through its control socket."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import Any

import click

from ..errors import ConfigError
from ..target.config import NON_OWNER_STATES, PROFILES, ServerSpec, load_config, quick_config
from ..target.faults import KINDS


@click.group()
def target() -> None:
    """The sanpath software iSCSI array."""


@target.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML configuration file.")
@click.option("--iqn", help="Target name (quick form).")
@click.option("--portal", "portals", multiple=True, metavar="[CTRL=]ADDR[:PORT]",
              help="Portal to listen on (repeat). Profiles other than portal split the portals between "
                   "controllers A and B: the first half (rounded up) on A, the rest on B, unless each names "
                   "its controller (B=127.0.0.2:3260).")
@click.option("--lun", "luns", multiple=True, metavar="PATH[:SIZE]|mem:SIZE[,KEY=VALUE...]",
              help="A LUN (repeat; numbered from 0); options block_size, physical_block_size, read_only, serial "
                   "(e.g. /srv/lun0.img:10GiB,physical_block_size=4KiB).")
@click.option("--profile", type=click.Choice(PROFILES), default="portal", show_default=True,
              help="Array family (quick form).")
@click.option("--owner", default="A", show_default=True, help="Controller owning the LUNs at start (alua, rdac).")
@click.option("--non-owner-state", type=click.Choice(NON_OWNER_STATES), default="non-optimized", show_default=True,
              help="ALUA state of the non-owning controller (alua).")
@click.option("--iqn-per", type=click.Choice(["portal", "controller"]), default="portal", show_default=True,
              help="multi-iqn: one IQN per portal or per controller.")
@click.option("--implicit-after-commands", type=int, default=0, show_default=True,
              help="alua: move a LUN after N consecutive I/O commands through a non-owner port (0: never).")
@click.option("--transition-time", type=float, default=0.0, show_default=True,
              help="Seconds a LUN spends transitioning (alua) or quiescing (rdac) when it moves.")
@click.option("--control", "control_path", type=click.Path(dir_okay=False),
              help="Control socket path (default: $XDG_RUNTIME_DIR/sanpath/target-PID.sock).")
def serve(config_path: str | None, iqn: str | None, portals: tuple[str, ...], luns: tuple[str, ...], profile: str,
          owner: str, non_owner_state: str, iqn_per: str, implicit_after_commands: int, transition_time: float,
          control_path: str | None) -> None:
    """Serve targets until Ctrl-C or SIGTERM, then flush the backing files and exit.

    Either --config FILE.toml, or the quick form: --iqn IQN --portal ADDR[:PORT] ... --lun ...
    """
    from ..target.control import default_control_path

    try:
        if config_path:
            if iqn or portals or luns:
                raise ConfigError("--config", "give either --config or the quick form (--iqn/--portal/--lun)")
            spec = load_config(config_path)
        else:
            if not iqn:
                raise ConfigError("--iqn", "required without --config")
            spec = quick_config(iqn, list(portals), list(luns), profile=profile, owner=owner,
                                non_owner_state=non_owner_state, iqn_per=iqn_per,
                                implicit_after_commands=implicit_after_commands, transition_time=transition_time)
    except ConfigError as e:
        click.echo(f"sanpath target serve: {e}", err=True)
        sys.exit(2)
    try:
        asyncio.run(_serve(spec, control_path or default_control_path()))
    except OSError as e:
        click.echo(f"sanpath target serve: cannot listen: {e}", err=True)
        sys.exit(1)


async def _serve(spec: ServerSpec, control_path: str) -> None:
    from ..target.control import ControlServer
    from ..target.server import TargetServer

    server = TargetServer(spec)
    control = ControlServer(server, control_path)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        bound = await server.start()
        await control.start()
        names = ",".join(server.targets)
        portals = " ".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in bound)
        click.echo(f"sanpath target control: {control_path}")
        click.echo(f"sanpath target ready: {names} on {portals}", err=False)
        sys.stdout.flush()
        await stop.wait()
    finally:
        await control.stop()
        await server.stop()


def _call(control_path: str | None, request: dict[str, Any]) -> dict[str, Any]:
    from ..target.control import call, find_control_path

    try:
        answer = call(control_path or find_control_path(), request)
    except ConfigError as e:
        click.echo(f"sanpath target: {e}", err=True)
        sys.exit(2)
    if not answer.get("ok"):
        click.echo(f"sanpath target: {answer.get('error', answer)}", err=True)
        sys.exit(1)
    return answer


@target.command()
@click.argument("kind", type=click.Choice([*KINDS, "restore"]))
@click.argument("fault_id", required=False)
@click.option("--control", "control_path", type=click.Path(dir_okay=False), help="The target's control socket.")
@click.option("--portal", metavar="ADDR:PORT", help="The portal (portal-down, blackhole; optional for others).")
@click.option("--controller", metavar="NAME", help="The controller (controller fault).")
@click.option("--session", type=int, metavar="TSIH", help="drop-sessions: only this session.")
@click.option("--lun", type=int, help="medium-error, unit-attention: only this LUN.")
@click.option("--seconds", type=float, default=0.0, help="delay: how late each response leaves.")
@click.option("--digest", type=click.Choice(["header", "data"]), default="header", show_default=True)
@click.option("--after-commands", type=int, help="Start after N more SCSI commands.")
@click.option("--after-seconds", type=float, help="Start after T seconds.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def fault(kind: str, fault_id: str | None, control_path: str | None, portal: str | None, controller: str | None,
          session: int | None, lun: int | None, seconds: float, digest: str, after_commands: int | None,
          after_seconds: float | None, fmt: str) -> None:
    """Inject a fault into a running target, or `restore [ID|all]`.

    KIND is one of: portal-down, blackhole, drop-sessions, delay, medium-error, unit-attention, digest,
    controller. Example: sanpath target fault delay --portal 127.0.0.1:3260 --seconds 2 --after-commands 100
    """
    if kind == "restore":
        answer = _call(control_path, {"op": "restore", "id": fault_id or "all"})
        click.echo(json.dumps(answer) if fmt == "json" else f"restored: {' '.join(answer['restored']) or 'nothing'}")
        return
    if fault_id:
        click.echo(f"sanpath target fault: unexpected argument {fault_id!r} (only restore takes an id)", err=True)
        sys.exit(2)
    request = {"op": "fault", "kind": kind, "portal": portal, "controller": controller, "session": session,
               "lun": lun, "seconds": seconds, "digest": digest, "after_commands": after_commands,
               "after_seconds": after_seconds}
    answer = _call(control_path, request)
    f = answer["fault"]
    if fmt == "json":
        click.echo(json.dumps(answer))
    else:
        details = " ".join(f"{k}={v}" for k, v in f.items() if k not in ("id", "kind", "state"))
        click.echo(f"{f['id']} {f['kind']} {f['state']} {details}".rstrip())


@target.command()
@click.option("--control", "control_path", type=click.Path(dir_okay=False), help="The target's control socket.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def status(control_path: str | None, fmt: str) -> None:
    """Print a running target's arrays, LU owners, per-portal and per-session counters, and faults."""
    st = _call(control_path, {"op": "status"})["status"]
    if fmt == "json":
        click.echo(json.dumps(st, indent=2))
        return
    for a in st["arrays"]:
        click.echo(f"target {a['iqn']} profile {a['profile']}: {', '.join(a['targets'])}")
        for c in a["controllers"]:
            click.echo(f"  controller {c['name']}{' FAILED' if c['failed'] else ''}: {' '.join(c['portals'])}")
        for lun in a["luns"]:
            states = " ".join(f"{k}={v}" for k, v in lun["states"].items())
            owner = f" owner {lun['owner']}" if lun["owner"] else ""
            click.echo(f"  LUN {lun['id']}{owner} {states}".rstrip())
    row = "{:<24} {:>9} {:>9} {:>13} {:>13} {:>7}"
    click.echo(row.format("PORTAL", "STATE", "COMMANDS", "BYTES IN", "BYTES OUT", "ERRORS"))
    for p in st["portals"]:
        state = "down" if not p["listening"] else "blackhole" if p["blackholed"] else "up"
        click.echo(row.format(p["portal"], state, p["commands"], p["bytes_in"], p["bytes_out"], p["errors"]))
    if st["sessions"]:
        srow = "{:>5} {:<24} {:<40} {:>9} {:>13} {:>13} {:>7}"
        click.echo(srow.format("TSIH", "PORTAL", "TARGET", "COMMANDS", "BYTES IN", "BYTES OUT", "ERRORS"))
        for s in st["sessions"]:
            click.echo(srow.format(s["tsih"], s["portal"], s["target"], s["commands"], s["bytes_in"],
                                   s["bytes_out"], s["errors"]))
    for f in st["faults"]:
        details = " ".join(f"{k}={v}" for k, v in f.items() if k not in ("id", "kind", "state"))
        click.echo(f"fault {f['id']} {f['kind']} {f['state']} {details}".rstrip())
