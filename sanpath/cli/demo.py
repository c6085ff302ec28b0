"""``sanpath demo``: the whole system in one command (sanpath/workload/demo.py; ``--lab``:
sanpath/workload/demo_lab.py)."""

from __future__ import annotations

import asyncio
import sys

import click

from ..errors import ConfigError, SanpathError

DEFAULT_CABLE = "host-s1"


@click.command()
@click.option("--seconds", type=click.FloatRange(4, 600), default=12.0, show_default=True,
              help="How long the verified I/O runs (the path is failed and restored within it).")
@click.option("--lab", "on_lab", is_flag=True,
              help="Run on the namespace lab instead (root): the array in its own namespace with controllers "
                   "A and B on two storage subnets (four portals), the host in another, and a real cable pull.")
@click.option("--cable", default=DEFAULT_CABLE, show_default=True,
              help="With --lab: the cable to pull and plug back in (host-s1, host-s2, ctlA-s1, ctlB-s2, ...).")
@click.option("--serve", "serve_after", is_flag=True,
              help="Keep the array, the daemon and the console running afterwards (until Ctrl-C), for a person to "
                   "click through the console.")
@click.option("--lab-host", is_flag=True, hidden=True)  # the host side of --lab, run by it in the host namespace
@click.option("--target", "targets", hidden=True)
def demo(seconds: float, on_lab: bool, cable: str, serve_after: bool, lab_host: bool, targets: str | None) -> None:
    """Start an embedded array with two portals, a host daemon on a SQLite store and the web console; go
    through the design guide's steps (multipathing in maintenance mode, Discover IQNs, Discover LUNs,
    create the SR), run verified I/O through the SR's NBD export, fail a path and restore it, watching
    the alerts; exit 0 only if nothing was lost.

    With --lab (root), the same on the namespace lab: the array in a namespace of its own with four
    portals, the host daemon in the host's, and the fault is a pulled cable."""
    if not (on_lab or lab_host) and cable != DEFAULT_CABLE:
        raise click.UsageError("--cable goes with --lab (the embedded demo black-holes a portal instead)")
    if lab_host:
        _lab_host(seconds, cable, targets or "")
    if on_lab:
        _lab(seconds, cable)
    if serve_after and on_lab:
        raise click.UsageError("--serve goes with the embedded demo, not with --lab")
    from ..workload.demo import run_system_demo, summary

    try:
        result = asyncio.run(run_system_demo(seconds=seconds, serve_after=serve_after, out=click.echo))
    except KeyboardInterrupt:
        click.echo("sanpath demo: interrupted; everything it started is stopped", err=True)
        sys.exit(130)
    except asyncio.CancelledError:  # SIGTERM
        click.echo("sanpath demo: terminated; everything it started is stopped", err=True)
        sys.exit(128 + 15)
    except SanpathError as e:
        click.echo(f"sanpath demo: {e}", err=True)
        sys.exit(1)
    click.echo(summary(result))
    sys.exit(0 if result.ok else 1)


def _lab(seconds: float, cable: str) -> None:
    from ..lab.netns import NetnsError, require_root
    from ..workload.demo_lab import check_cable, run_lab_demo

    try:
        require_root()
        check_cable(cable)
    except (NetnsError, ConfigError) as e:
        click.echo(f"sanpath demo --lab: {e}", err=True)
        sys.exit(2)
    try:
        code = run_lab_demo(seconds=seconds, cable=cable, out=click.echo)
    except KeyboardInterrupt:
        click.echo("sanpath demo --lab: interrupted; the lab is down", err=True)
        sys.exit(130)
    except (SanpathError, RuntimeError) as e:  # the lab could not be built, or the target did not start
        click.echo(f"sanpath demo --lab: {e}", err=True)
        sys.exit(1)
    sys.exit(code)


def _lab_host(seconds: float, cable: str, targets: str) -> None:
    from ..workload.demo_lab import run_lab_host

    try:
        code = asyncio.run(run_lab_host(targets=targets, cable=cable, seconds=seconds, out=click.echo))
    except KeyboardInterrupt:
        sys.exit(130)
    except asyncio.CancelledError:  # SIGTERM from the driver, after a clean stop
        sys.exit(128 + 15)
    except SanpathError as e:
        click.echo(f"sanpath demo --lab-host: {e}", err=True)
        sys.exit(1)
    sys.exit(code)
