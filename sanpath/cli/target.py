"""``sanpath target ...``: run the software array."""

from __future__ import annotations

import asyncio
import signal
import sys

import click

from ..errors import ConfigError
from ..target.config import ServerSpec, load_config, quick_config


@click.group()
def target() -> None:
    """The sanpath software iSCSI array."""


@target.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML configuration file.")
@click.option("--iqn", help="Target name (quick form).")
@click.option("--portal", "portals", multiple=True, metavar="ADDR[:PORT]", help="Portal to listen on (repeat).")
@click.option("--lun", "luns", multiple=True, metavar="PATH[:SIZE]|mem:SIZE", help="A LUN (repeat; numbered from 0).")
def serve(config_path: str | None, iqn: str | None, portals: tuple[str, ...], luns: tuple[str, ...]) -> None:
    """Serve targets until Ctrl-C or SIGTERM, then flush the backing files and exit.

    Either --config FILE.toml, or the quick form: --iqn IQN --portal ADDR[:PORT] ... --lun ...
    """
    try:
        if config_path:
            if iqn or portals or luns:
                raise ConfigError("--config", "give either --config or the quick form (--iqn/--portal/--lun)")
            spec = load_config(config_path)
        else:
            if not iqn:
                raise ConfigError("--iqn", "required without --config")
            spec = quick_config(iqn, list(portals), list(luns))
    except ConfigError as e:
        click.echo(f"sanpath target serve: {e}", err=True)
        sys.exit(2)
    try:
        asyncio.run(_serve(spec))
    except OSError as e:
        click.echo(f"sanpath target serve: cannot listen: {e}", err=True)
        sys.exit(1)


async def _serve(spec: ServerSpec) -> None:
    from ..target.server import TargetServer

    server = TargetServer(spec)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        bound = await server.start()
        names = ", ".join(t.iqn for t in spec.targets)
        portals = " ".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in bound)
        click.echo(f"sanpath target ready: {names} on {portals}", err=False)
        sys.stdout.flush()
        await stop.wait()
    finally:
        await server.stop()
