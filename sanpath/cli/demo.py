"""``sanpath demo``: the whole stack in one command (see sanpath/demo.py)."""

from __future__ import annotations

import asyncio
import sys

import click

from ..errors import SanpathError


@click.command()
@click.option("--seconds", type=click.FloatRange(4, 600), default=12.0, show_default=True,
              help="How long the verified I/O runs (the path is failed and restored within it).")
def demo(seconds: float) -> None:
    """Start an embedded array with two portals, attach over both paths, export over NBD, run verified
    I/O, fail a path and restore it while showing live status; exit 0 only if nothing was lost."""
    from ..demo import run_demo, summary

    try:
        result = asyncio.run(run_demo(seconds=seconds, out=lambda line: click.echo(line)))
    except SanpathError as e:
        click.echo(f"sanpath demo: {e}", err=True)
        sys.exit(1)
    click.echo(summary(result))
    sys.exit(0 if result.ok else 1)
