"""``sanpath attach`` (the multipathed LUN, exported over NBD, in the foreground) and ``sanpath status``
(its topology, per-path throughput, path counts and events, read from the control socket)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from dataclasses import replace
from typing import Any

import click

from .. import control
from ..errors import SanpathError
from ..multipath.config import policy_source
from ..multipath.discovery import MultipathSpec
from ..multipath.status import render_topology
from .options import ConnectionOptions, connection_options, fail, session_config


@click.command()
@click.option("--target", "targets", required=True, metavar="ADDR[:PORT][,ADDR...]",
              help="Target addresses to discover on (all of them for a multi-IQN array).")
@click.option("--iqn", default="*", show_default=True, help="The target IQN, or * for every IQN discovered.")
@click.option("--scsi-id", help="The LUN's SCSIid (needed when several LUNs are found).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="multipath.conf-like TOML file.")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE", help="Override a multipath setting.")
@click.option("--nbd", required=True, metavar="unix:PATH|tcp:ADDR:PORT", help="Where to export the LUN over NBD.")
@click.option("--control", "control_path", type=click.Path(dir_okay=False),
              help="Control socket for `sanpath status` (default: in $XDG_RUNTIME_DIR/sanpath).")
@click.option("--read-only", is_flag=True, help="Export read-only.")
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True),
              help="With --nbd tcp:...: require TLS (NBD_OPT_STARTTLS) with this x509 certificate. Needed for any "
              "address that is not loopback.")
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True), help="The certificate's private key.")
@click.option("--tls-ca", type=click.Path(dir_okay=False, exists=True),
              help="Also require client certificates signed by this CA.")
@connection_options
def attach(targets: str, iqn: str, scsi_id: str | None, config_path: str | None, assignments: tuple[str, ...],
           nbd: str, control_path: str | None, read_only: bool, tls_cert: str | None, tls_key: str | None,
           tls_ca: str | None, **kw: Any) -> None:
    """Log in to every path of a LUN, build its multipath device and export it over NBD until SIGTERM or
    Ctrl-C; then drain what is in flight, flush and log out. --source takes one address per storage NIC."""
    from ..host.attach import AttachService, NbdEndpoint, tls_context

    opts = ConnectionOptions.pop(kw)
    try:
        if bool(tls_cert) != bool(tls_key):
            fail("attach", "--tls-cert and --tls-key go together", 2)
        tls = tls_context(tls_cert, tls_key, tls_ca) if tls_cert and tls_key else None
        endpoint = NbdEndpoint.parse(nbd)
        spec = MultipathSpec.parse(targets, iqn, scsi_id, opts.source or "")
        policy = policy_source(config_path, list(assignments))
    except SanpathError as e:
        fail("attach", str(e), 2)
    base = replace(session_config(opts, "", 3260, None), source=None)
    service = AttachService(spec, base, policy, endpoint, control_path or control.default_socket("attach"),
                            read_only=read_only, tls=tls)
    try:
        asyncio.run(_run(service))
    except SanpathError as e:
        fail("attach", str(e))


async def _run(service: Any) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        uri = await service.start()
        device = service.device
        active, total = device.active_paths, len(device.paths)
        click.echo(f"sanpath attach ready: {uri} ({active} of {total} paths active) control {service.control_path}")
        sys.stdout.flush()
        await stop.wait()
        click.echo("sanpath attach: stopping: draining, flushing, logging out", err=True)
    finally:
        await service.stop()


@click.command()
@click.option("--control", "control_path", type=click.Path(dir_okay=False),
              help="The attach service's control socket (found automatically when only one runs).")
@click.option("--watch", is_flag=True, help="Refresh every second until Ctrl-C.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def status(control_path: str | None, watch: bool, fmt: str) -> None:
    """Topology, per-path throughput, "n of m paths active" and recent events of `sanpath attach`."""
    try:
        path = control_path or control.find_socket("attach", "attach service")
        while True:
            answer = control.call(path, {"op": "status"}, what="attach service", hint="sanpath attach")
            if not answer.get("ok"):
                fail("status", str(answer.get("error")))
            st = answer["status"]
            if fmt == "json":
                click.echo(json.dumps(st))
            else:
                if watch and sys.stdout.isatty():
                    click.echo("\x1b[H\x1b[2J", nl=False)
                click.echo(f"{st['nbd']}\n" + render_topology(st, st.get("throughput")))
            if not watch:
                return
            sys.stdout.flush()
            time.sleep(1.0)
    except SanpathError as e:
        fail("status", str(e), 2)
    except KeyboardInterrupt:
        return
