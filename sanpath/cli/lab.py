"""``sanpath lab ...``: the namespace lab from the command line (root only).

Thin over ``sanpath.lab``: ``up`` builds the reference topology (the address plan is in ``lab --help``)
and leaves it running, saving its state so that ``pull``, ``restore``, ``shape``, ``status``, ``exec``
and ``down`` (from any later process) act on exactly what ``up`` made. Exit codes: 0 success; 1 the
operation failed; 2 bad input or not root.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any, NoReturn, TypeVar

import click

from ..errors import ConfigError
from ..lab.lab import DEFAULT_LATENCY, PULL_ENDS, Lab
from ..lab.netns import NetnsError, exec_argv, require_root
from ..lab.topology import MAX_HOSTS, MAX_SUBNETS, Topology

DEFAULT_NAME = "default"
F = TypeVar("F", bound=Callable[..., Any])


def _fail(command: str, message: str, code: int = 1) -> NoReturn:
    click.echo(f"sanpath lab {command}: {message}", err=True)
    sys.exit(code)


def _root(command: str) -> None:
    try:
        require_root()
    except NetnsError as e:
        _fail(command, str(e), 2)


def _load(command: str, name: str) -> Lab:
    _root(command)
    try:
        return Lab.load(name)
    except NetnsError as e:
        _fail(command, str(e), 2)


def name_option(f: F) -> F:
    return click.option("--name", default=DEFAULT_NAME, show_default=True, help="Which lab.")(f)


@click.group()
def lab() -> None:
    """The namespace lab: host, switches and a two-controller array in network namespaces (root).

    \b
    Address plan (198.18.0.0/15, only inside the lab's namespaces):
      management 198.18.0.0/24: station .1 (switch sw0), host-mgmt .10
      storage k  198.18.k.0/24: ctlA-sk .1, ctlB-sk .2, host-sk .10 (switch swk)
      with --hosts N: host n (n >= 2) in namespace hostN, NICs hN-mgmt, hN-sk at .(9+n)
    """


@lab.command()
@name_option
@click.option("--subnets", type=click.IntRange(1, MAX_SUBNETS), default=2, show_default=True,
              help="Storage subnets (one host NIC, one switch and one NIC per controller each).")
@click.option("--controllers", type=click.IntRange(1, 8), default=2, show_default=True,
              help="Array controllers (A, B, ...).")
@click.option("--hosts", type=click.IntRange(1, MAX_HOSTS), default=1, show_default=True,
              help="Hosts of the pool, each with a management NIC and one NIC per storage subnet.")
@click.option("--shape", metavar="RATE", help="Shape every storage link to RATE (tc units, e.g. 1gbit).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def up(name: str, subnets: int, controllers: int, hosts: int, shape: str | None, fmt: str) -> None:
    """Build a lab and leave it running (until `sanpath lab down`)."""
    _root("up")

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)  # unwinds through Lab.up, which removes what it made

    signal.signal(signal.SIGTERM, on_term)
    try:
        the_lab = Lab(name, Topology(subnets, controllers, hosts))
        the_lab.up(shape=shape)
    except ConfigError as e:
        _fail("up", str(e), 2)
    except NetnsError as e:
        _fail("up", str(e))
    _print_status(the_lab, fmt)


@lab.command()
@name_option
@click.option("--all", "every", is_flag=True, help="Every lab that has a state file.")
def down(name: str, every: bool) -> None:
    """Tear a lab down: stop what runs inside it, delete its namespaces, cables and switches."""
    _root("down")
    labs = [_load("down", n) for n in (Lab.names() if every else [name])]
    failed = False
    for the_lab in labs:
        try:
            the_lab.down()
            click.echo(f"lab {the_lab.name} is down")
        except NetnsError as e:
            click.echo(f"sanpath lab down: {e}", err=True)
            failed = True
    if failed:
        sys.exit(1)


@lab.command()
@name_option
@click.argument("link")
@click.option("--end", type=click.Choice(PULL_ENDS), default="switch", show_default=True,
              help="switch: the switch port goes down, the NIC loses carrier (a pulled cable). "
                   "nic: the NIC itself is set down (its routes go away).")
def pull(name: str, link: str, end: str) -> None:
    """Pull LINK's cable (host-s1, ctlA-s2, host-mgmt, ...)."""
    the_lab = _load("pull", name)
    _run("pull", lambda: the_lab.pull(link, end))
    click.echo(f"{link}: pulled ({end} end)")


@lab.command()
@name_option
@click.argument("link")
def restore(name: str, link: str) -> None:
    """Plug LINK's cable back in."""
    the_lab = _load("restore", name)
    _run("restore", lambda: the_lab.restore(link))
    click.echo(f"{link}: restored")


@lab.command()
@name_option
@click.argument("link")
@click.argument("rate")
@click.option("--burst", metavar="BYTES", help="Token bucket size (default: 1 ms at RATE, at least 32 KiB).")
@click.option("--latency", default=DEFAULT_LATENCY, show_default=True, help="Longest a packet may queue.")
def shape(name: str, link: str, rate: str, burst: str | None, latency: str) -> None:
    """Limit LINK to RATE both ways (tbf on each end's egress), e.g. `shape host-s1 1gbit`."""
    the_lab = _load("shape", name)
    _run("shape", lambda: the_lab.shape(link, rate, burst, latency))
    click.echo(f"{link}: shaped to {rate}")


@lab.command()
@name_option
@click.argument("link")
def unshape(name: str, link: str) -> None:
    """Remove LINK's shaping."""
    the_lab = _load("unshape", name)
    _run("unshape", lambda: the_lab.unshape(link))
    click.echo(f"{link}: unshaped")


@lab.command()
@click.option("--name", help="One lab (default: every lab that is up).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def status(name: str | None, fmt: str) -> None:
    """Show the labs that are up: namespaces, links, addresses, pulls and shaping."""
    _root("status")
    labs = [_load("status", n) for n in ([name] if name else Lab.names())]
    if fmt == "json":
        click.echo(json.dumps([x.status() for x in labs], indent=2))
        return
    if not labs:
        click.echo("no lab is up")
    for x in labs:
        _print_status(x, "text")


@lab.command(name="exec", context_settings={"ignore_unknown_options": True})
@name_option
@click.argument("role")
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(name: str, role: str, argv: tuple[str, ...]) -> None:
    """Run a command inside ROLE's namespace (host, array, sw0, sw1, ...): `exec host -- iscsi-ls ...`."""
    the_lab = _load("exec", name)
    try:
        ns = the_lab.ns(role)
    except ConfigError as e:
        _fail("exec", str(e), 2)
    full = exec_argv(ns, argv)
    os.execvp(full[0], full)


def _run(command: str, action: Callable[[], None]) -> None:
    try:
        action()
    except ConfigError as e:
        _fail(command, str(e), 2)
    except NetnsError as e:
        _fail(command, str(e))


def _print_status(the_lab: Lab, fmt: str) -> None:
    st = the_lab.status()
    if fmt == "json":
        click.echo(json.dumps(st, indent=2))
        return
    click.echo(f"lab {st['name']} (id {st['id']}): {st['subnets']} storage subnets, controllers "
               f"{', '.join(st['controllers'])}; station {st['station']}")
    for role, ns in st["namespaces"].items():
        click.echo(f"  {role:<6} {ns}")
    click.echo(f"  {'LINK':<10} {'ADDRESS':<16} {'SWITCH':<6} {'STATE':<15} SHAPING")
    for row in st["links"]:
        state = f"pulled ({row['pulled']})" if row["pulled"] else row["state"]
        shaped = row["shaped"].get("rate", "")
        click.echo(f"  {row['link']:<10} {row['address']:<16} {row['switch']:<6} {state:<15} {shaped}")
