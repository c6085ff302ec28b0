"""``sanpath demo``: the whole stack in one command (see sanpath/demo.py; ``--lab``: sanpath/demo_lab.py)."""

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
@click.option("--lab-host", is_flag=True, hidden=True)  # the host side of --lab, run by it in the host namespace
@click.option("--target", "targets", hidden=True)
@click.option("--source", "sources", hidden=True)
def demo(seconds: float, on_lab: bool, cable: str, lab_host: bool, targets: str | None, sources: str | None) -> None:
    """Start an embedded array with two portals, attach over both paths, export over NBD, run verified
    I/O, fail a path and restore it while showing live status; exit 0 only if nothing was lost.

    With --lab (root), the same on the namespace lab: four paths, and the fault is a pulled cable."""
    if not (on_lab or lab_host) and cable != DEFAULT_CABLE:
        raise click.UsageError("--cable goes with --lab (the embedded demo black-holes a portal instead)")
    if lab_host:
        _lab_host(seconds, cable, targets or "", sources or "")
    if on_lab:
        _lab(seconds, cable)
    from ..demo import run_demo, summary

    try:
        result = asyncio.run(run_demo(seconds=seconds, out=click.echo))
    except SanpathError as e:
        click.echo(f"sanpath demo: {e}", err=True)
        sys.exit(1)
    click.echo(summary(result))
    sys.exit(0 if result.ok else 1)


def _lab(seconds: float, cable: str) -> None:
    from ..demo_lab import check_cable, run_lab_demo
    from ..lab.netns import NetnsError, require_root

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


def _lab_host(seconds: float, cable: str, targets: str, sources: str) -> None:
    from ..demo_lab import run_lab_host

    try:
        code = asyncio.run(run_lab_host(targets=targets, sources=sources, cable=cable, seconds=seconds,
                                        out=click.echo))
    except KeyboardInterrupt:
        sys.exit(130)
    except SanpathError as e:
        click.echo(f"sanpath demo --lab-host: {e}", err=True)
        sys.exit(1)
    sys.exit(code)
