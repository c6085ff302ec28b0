"""The ``sanpath`` command: a click group; each subcommand lives in its own module."""

from __future__ import annotations

import logging

import click

from .. import __version__
from .alerts import alerts
from .attach import attach, status
from .bench import bench
from .demo import demo
from .doctor import doctor
from .host import host
from .initiator import COMMANDS as INITIATOR_COMMANDS
from .lab import lab
from .pbd import pbd
from .pif import pif
from .pool import pool
from .sr import sr
from .target import target
from .xe import xe


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sanpath")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """sanpath: a userspace iSCSI multipathing stack."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


cli.add_command(demo)
cli.add_command(attach)
cli.add_command(status)
cli.add_command(target)
cli.add_command(lab)
cli.add_command(alerts)
cli.add_command(xe)
cli.add_command(doctor)
cli.add_command(bench)
for _group in (pool, host, pif, sr, pbd):
    cli.add_command(_group)
for _command in INITIATOR_COMMANDS:
    cli.add_command(_command)


def main() -> None:
    cli()
