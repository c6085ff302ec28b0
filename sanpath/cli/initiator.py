"""``sanpath discover``, ``sanpath luns``, ``sanpath bench``: the initiator from the command line.

Thin over ``sanpath.initiator``: this module parses options, resolves CHAP secrets (from a file or the
environment, never from an option value), and prints. Exit codes: 0 success; 1 the operation failed
(nothing answered, a login was refused, I/O errors or verify failures); 2 bad input.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, NoReturn, TypeVar

import click

from ..errors import ConfigError, SanpathError
from ..initiator.bench import Bench, BenchError, BenchResult, BenchSpec, Progress
from ..initiator.device import LunInfo, ScsiDevice
from ..initiator.discovery import discover as run_discover
from ..initiator.discovery import parse_portals
from ..initiator.session import Session, SessionConfig
from ..initiator.url import IscsiUrl, parse_url
from ..iscsi.auth import ChapCredentials, ChapInitiator
from ..target.config import parse_size

F = TypeVar("F", bound=Callable[..., Any])

CHAP_SECRET_ENV = "SANPATH_CHAP_SECRET"
TARGET_CHAP_SECRET_ENV = "SANPATH_TARGET_CHAP_SECRET"

DEVICE_TYPES = {0x00: "disk", 0x01: "tape", 0x03: "processor", 0x05: "cd/dvd", 0x07: "optical", 0x08: "changer",
                0x0C: "raid", 0x0D: "enclosure", 0x0E: "rbc", 0x1E: "wlun", 0x1F: "unknown"}


def fail(command: str, message: str, code: int = 1) -> NoReturn:
    click.echo(f"sanpath {command}: {message}", err=True)
    sys.exit(code)


# --- shared connection options ---------------------------------------------------------------------


def connection_options(f: F) -> F:
    """CHAP, initiator name and source address: the same on every command that logs in."""
    options = [
        click.option("--chap-user", metavar="NAME", help="CHAP user name the initiator logs in as."),
        click.option("--chap-secret-file", type=click.Path(dir_okay=False), metavar="PATH",
                     help=f"File holding the CHAP secret (else ${CHAP_SECRET_ENV}). Never given on the "
                          "command line."),
        click.option("--target-chap-user", metavar="NAME",
                     help="Mutual CHAP: the name the target must answer with."),
        click.option("--target-chap-secret-file", type=click.Path(dir_okay=False), metavar="PATH",
                     help=f"Mutual CHAP: file holding the target's secret (else ${TARGET_CHAP_SECRET_ENV})."),
        click.option("--initiator-name", metavar="IQN",
                     help="Our iSCSI name (default $SANPATH_INITIATOR_NAME, else iqn.2026-11.org.sanpath:HOST)."),
        click.option("--source", metavar="ADDR", help="Local address to connect from (the storage NIC); with "
                     "--target, a comma-separated list, one per storage NIC."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@dataclass(frozen=True, slots=True)
class ConnectionOptions:
    chap_user: str | None
    chap_secret_file: str | None
    target_chap_user: str | None
    target_chap_secret_file: str | None
    initiator_name: str | None
    source: str | None


def _read_secret(path: str | None, env: str, option: str) -> bytes | None:
    if path:
        try:
            with open(path, "rb") as f:
                secret = f.read().strip()  # as the target reads its secret_file
        except OSError as e:
            raise click.BadParameter(f"cannot read {path}: {e.strerror}", param_hint=option) from None
        if not secret:
            raise click.BadParameter(f"{path} is empty", param_hint=option)
        return secret
    value = os.environ.get(env)
    return value.encode() if value else None


def resolve_chap(opts: ConnectionOptions, url_user: str | None = None, url_password: str | None = None,
                 ) -> tuple[ChapCredentials | None, ChapCredentials | None]:
    """(initiator credentials, mutual credentials) from the URL, the secret files and the environment.
    Raises click.UsageError / BadParameter (exit 2) for an incomplete or inconsistent combination."""
    if url_user and opts.chap_user and url_user != opts.chap_user:
        raise click.UsageError(f"the URL names CHAP user {url_user!r} but --chap-user is {opts.chap_user!r}")
    user = url_user or opts.chap_user
    if opts.chap_secret_file and not user:
        raise click.UsageError("--chap-secret-file needs --chap-user (or user@ in the URL)")
    chap = mutual = None
    if user:
        secret = url_password.encode() if url_password else _read_secret(opts.chap_secret_file, CHAP_SECRET_ENV,
                                                                         "--chap-secret-file")
        if secret is None:
            raise click.UsageError(f"CHAP user {user!r} needs a secret: --chap-secret-file PATH, "
                                   f"${CHAP_SECRET_ENV}, or user%password@ in the URL")
        chap = ChapCredentials(user, secret)
    if opts.target_chap_secret_file and not opts.target_chap_user:
        raise click.UsageError("--target-chap-secret-file needs --target-chap-user")
    if opts.target_chap_user:
        if chap is None:
            raise click.UsageError("mutual CHAP (--target-chap-user) needs initiator CHAP (--chap-user) as well")
        secret = _read_secret(opts.target_chap_secret_file, TARGET_CHAP_SECRET_ENV, "--target-chap-secret-file")
        if secret is None:
            raise click.UsageError(f"--target-chap-user {opts.target_chap_user!r} needs a secret: "
                                   f"--target-chap-secret-file PATH or ${TARGET_CHAP_SECRET_ENV}")
        mutual = ChapCredentials(opts.target_chap_user, secret)
    if chap is not None:
        try:
            ChapInitiator(chap, target=mutual)  # checks secret lengths and that the two differ
        except ConfigError as e:
            raise click.UsageError(str(e)) from None
    return chap, mutual


def session_config(opts: ConnectionOptions, host: str, port: int, target: str | None,
                   url_user: str | None = None, url_password: str | None = None, **extra: Any) -> SessionConfig:
    chap, mutual = resolve_chap(opts, url_user, url_password)
    kwargs: dict[str, Any] = {"chap": chap, "mutual": mutual, "source": opts.source, **extra}
    if opts.initiator_name:
        kwargs["initiator_name"] = opts.initiator_name
    return SessionConfig(host=host, port=port, target=target, **kwargs)


def _opts(kw: dict[str, Any]) -> ConnectionOptions:
    return ConnectionOptions(*(kw.pop(k) for k in ("chap_user", "chap_secret_file", "target_chap_user",
                                                   "target_chap_secret_file", "initiator_name", "source")))


def _url(text: str, *, need_lun: bool) -> IscsiUrl:
    try:
        url = parse_url(text, need_lun=need_lun)
    except (ConfigError, ValueError) as e:
        raise click.BadParameter(str(e), param_hint="URL") from None
    if not url.target:
        raise click.BadParameter(f"{text!r} names no target; expected iscsi://[user[%password]@]host[:port]/<iqn>"
                                 + ("/<lun>" if need_lun else "[/<lun>]"), param_hint="URL")
    return url


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [list(headers)] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells)


def human_size(n: int) -> str:
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            v = n / (1 << shift)
            return f"{v:.0f}{unit}" if n % (1 << shift) == 0 else f"{v:.1f}{unit}"
    return f"{n}B"


class SizeType(click.ParamType):
    name = "SIZE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        if param is not None and param.name == "offset" and str(value).strip() == "0":
            return 0
        try:
            return parse_size(param.opts[0] if param else "size", value)
        except ConfigError as e:
            self.fail(str(e).split(": ", 1)[-1], param, ctx)


SIZE = SizeType()
FORMAT = click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
                      help="Output format.")


# --- discover --------------------------------------------------------------------------------------


@click.command()
@click.argument("portals", metavar="HOST[:PORT][,HOST[:PORT]...]")
@FORMAT
@connection_options
def discover(portals: str, fmt: str, **kw: Any) -> None:
    """SendTargets discovery on one or more portals.

    Port 3260 when absent. Prints one row per (portal address, port, TPGT, IQN) found on any of them.
    A portal that fails is reported on stderr; the exit code is non-zero only when no portal answered.
    """
    opts = _opts(kw)
    try:
        portal_list = parse_portals(portals)
    except (ConfigError, ValueError) as e:
        raise click.BadParameter(str(e), param_hint="PORTALS") from None
    config = session_config(opts, "", 3260, None, nop_interval=0)
    try:
        records, errors = asyncio.run(run_discover(portal_list, config))
    except SanpathError as e:
        fail("discover", str(e))
    for portal, error in errors.items():
        click.echo(f"sanpath discover: {portal}: {_error_text(portal, error)}", err=True)
    if fmt == "json":
        click.echo(json.dumps({
            "targets": [{"address": r.address, "port": r.port, "tpgt": r.tpgt, "iqn": r.iqn} for r in records],
            "errors": [{"portal": p, "error": _error_text(p, e)} for p, e in errors.items()],
        }, indent=2))
    else:
        click.echo(_table(("ADDRESS", "PORT", "TPGT", "IQN"), [(r.address, r.port, r.tpgt, r.iqn) for r in records]))
    if len(errors) == len(portal_list):
        sys.exit(1)


def _error_text(portal: str, error: BaseException) -> str:
    text = str(error)
    return text[len(portal) + 2 :] if text.startswith(portal + ": ") else text


# --- luns ------------------------------------------------------------------------------------------


@click.command()
@click.argument("url", metavar="URL")
@FORMAT
@connection_options
def luns(url: str, fmt: str, **kw: Any) -> None:
    """List a target's LUNs: type, size, vendor, product, serial, SCSIid.

    REPORT LUNS, then INQUIRY, VPD and READ CAPACITY for each LUN. URL is
    iscsi://[user[%password]@]host[:port]/<iqn>[/<lun>]; REPORT LUNS goes to the LUN given (default 0).
    CHAP credentials may come in the URL, as libiscsi takes them, or from the options.
    """
    opts = _opts(kw)
    u = _url(url, need_lun=False)
    config = session_config(opts, u.host, u.port, u.target, u.user, u.password, nop_interval=0)
    try:
        infos, errors = asyncio.run(_luns(config, u.lun))
    except SanpathError as e:
        fail("luns", str(e))
    for lun, error in errors.items():
        click.echo(f"sanpath luns: LUN {lun}: {error}", err=True)
    if fmt == "json":
        click.echo(json.dumps([{
            "lun": i.lun, "type": DEVICE_TYPES.get(i.device_type, f"0x{i.device_type:02x}"),
            "device_type": i.device_type, "size": i.size, "block_size": i.block_size, "vendor": i.vendor,
            "product": i.product, "revision": i.revision, "serial": i.serial, "scsi_id": i.scsi_id,
            "thin": i.lbpme} for i in infos], indent=2))
    else:
        click.echo(_table(("LUN", "TYPE", "SIZE", "VENDOR", "PRODUCT", "SERIAL", "SCSIID"),
                          [(i.lun, DEVICE_TYPES.get(i.device_type, f"0x{i.device_type:02x}"), human_size(i.size),
                            i.vendor, i.product, i.serial, i.scsi_id) for i in infos]))
    if errors:
        sys.exit(1)


async def _luns(config: SessionConfig, report_lun: int) -> tuple[list[LunInfo], dict[int, SanpathError]]:
    session = await Session.open(config)
    try:
        numbers = await ScsiDevice(session, report_lun).report_luns()
        infos: list[LunInfo] = []
        errors: dict[int, SanpathError] = {}
        for n in numbers:
            try:
                infos.append(await ScsiDevice(session, n).info())
            except SanpathError as e:
                errors[n] = e
        return infos, errors
    finally:
        await session.logout()


# --- bench -----------------------------------------------------------------------------------------


@click.command()
@click.argument("url", metavar="URL", required=False)
@click.option("--target", "mp_targets", metavar="ADDR[:PORT][,ADDR...]",
              help="Multipath: discover on these addresses and use every path (instead of URL).")
@click.option("--iqn", "mp_iqn", default="*", show_default=True, help="Multipath: the target IQN, or * for all.")
@click.option("--scsi-id", "mp_scsi_id", help="Multipath: the LUN's SCSIid (needed when several LUNs are found).")
@click.option("--multipath-config", "mp_config", type=click.Path(dir_okay=False),
              help="Multipath: a multipath.conf-like TOML file.")
@click.option("--set", "mp_set", multiple=True, metavar="KEY=VALUE", help="Multipath: override a setting (repeat).")
@click.option("--rw", type=click.Choice(["read", "write", "randread", "randwrite", "randrw"]), default="randread",
              show_default=True, help="Access pattern.")
@click.option("--bs", type=SIZE, default="4KiB", show_default=True, help="I/O size (a multiple of the block size).")
@click.option("--qd", type=click.IntRange(1, 1024), default=1, show_default=True, help="I/Os in flight.")
@click.option("--time", "seconds", type=click.FloatRange(0, min_open=True), default=10.0, show_default=True,
              help="Seconds to run.")
@click.option("--size", type=SIZE, help="Limit the region to this many bytes (default: the whole LUN).")
@click.option("--offset", type=SIZE, default=0, help="Start of the region (a multiple of the block size).")
@click.option("--rwmixread", type=click.IntRange(0, 100), default=50, show_default=True,
              help="Percent reads in randrw.")
@click.option("--verify", is_flag=True,
              help="Stamp every block written with its LBA and a generation number and check every read. "
                   "Read modes (read, randread, randrw) first WRITE THE WHOLE REGION; write modes read back "
                   "what they wrote after the run. Destroys the region's data.")
@click.option("--max-errors", type=click.IntRange(0), default=100, show_default=True,
              help="Stop after this many failed I/Os (0: never).")
@click.option("--seed", type=int, help="Random seed (offsets, mix, verify pattern).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Result format on stdout (progress always goes to stderr).")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
@connection_options
def bench(url: str | None, mp_targets: str | None, mp_iqn: str, mp_scsi_id: str | None,
          mp_config: str | None, mp_set: tuple[str, ...], rw: str, bs: int, qd: int, seconds: float, size: int | None,
          offset: int, rwmixread: int, verify: bool, max_errors: int, seed: int | None, fmt: str, quiet: bool,
          **kw: Any) -> None:
    """A fio-like load on one LUN: fixed pattern, block size, queue depth and time.

    URL is iscsi://[user[%password]@]host[:port]/<iqn>/<lun>. Writes (write, randwrite, randrw, and
    --verify in any mode) destroy the data in the region. Progress goes to stderr once a second; the
    result to stdout. Exit code 1 when any I/O failed or a verify check found wrong data.
    """
    opts = _opts(kw)
    spec = BenchSpec(rw=rw, bs=bs, qd=qd, seconds=seconds, verify=verify, offset=offset, size=size,
                     rwmix_read=rwmixread, max_errors=max_errors, seed=seed)
    if (url is None) == (mp_targets is None):
        fail("bench", "give either a URL (one path) or --target (multipath)", 2)
    printer = None if quiet else ProgressPrinter(rw, sys.stderr)
    extra: dict[str, Any] = {}
    try:
        if mp_targets is not None:
            from .multipath import multipath_bench

            # with --target, --source may list one address per storage NIC
            config = replace(session_config(opts, "", 3260, None), source=None)
            result, extra = asyncio.run(multipath_bench(
                config, mp_targets, mp_iqn, mp_scsi_id, opts.source or "", mp_config, list(mp_set), spec, printer))
        else:
            assert url is not None
            u = _url(url, need_lun=True)
            config = session_config(opts, u.host, u.port, u.target, u.user, u.password)
            result = asyncio.run(_bench(config, u.lun, spec, printer))
    except BenchSetupError as e:
        fail("bench", str(e), 2)
    except KeyboardInterrupt:
        fail("bench", "interrupted", 130)
    except SanpathError as e:
        fail("bench", str(e))
    finally:
        if printer is not None:
            printer.close()
    if fmt == "json":
        click.echo(json.dumps({**result.to_json(), **extra}, indent=2))
    else:
        click.echo(_summary(result))
        if "topology" in extra:
            click.echo(extra["topology"])
    for m in result.messages:
        click.echo(f"sanpath bench: {m}", err=True)
    if result.errors or result.verify_failures:
        sys.exit(1)


class BenchSetupError(SanpathError):
    """The spec does not fit the LUN (found only once it is opened): bad input, exit 2."""


async def _bench(config: SessionConfig, lun: int, spec: BenchSpec, printer: ProgressPrinter | None) -> BenchResult:
    session = await Session.open(config)
    try:
        device = await ScsiDevice(session, lun).open()
        return await run_engine(device, f"LUN {lun}", spec, printer)
    finally:
        await session.logout()


async def run_engine(device: Any, name: str, spec: BenchSpec, printer: ProgressPrinter | None) -> BenchResult:
    """Run the load on any BlockDevice-like object, with progress and a first Ctrl-C that ends the run."""
    try:
        engine = Bench(device, spec, progress=printer)
    except BenchError as e:
        raise BenchSetupError(f"{name} ({device.size} bytes, {device.block_size}-byte blocks): {e}") from None
    if spec.verify and spec.reads and printer is not None:
        printer.note(f"verify: writing the region first ({human_size(engine.region_size)})")
    loop = asyncio.get_running_loop()

    def interrupted() -> None:  # the first Ctrl-C ends the run with a result; a second one aborts
        engine.stop("interrupted (SIGINT)")
        loop.remove_signal_handler(signal.SIGINT)

    with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread / no signals
        loop.add_signal_handler(signal.SIGINT, interrupted)
    try:
        return await engine.run()
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)


class ProgressPrinter:
    """One line a second: overwritten in place on a terminal, appended otherwise (logs, pipes)."""

    def __init__(self, rw: str, stream: Any) -> None:
        self.rw = rw
        self.stream = stream
        self.tty = stream.isatty()
        self.dirty = False

    def __call__(self, p: Progress) -> None:
        line = (f"[{p.elapsed:5.0f}s] {p.phase:<7} {self.rw:<9} {p.iops:9.0f} IOPS {p.mbps:9.1f} MB/s  "
                f"errors {p.errors}  verify failures {p.verify_failures}")
        if self.tty:
            self.stream.write("\r\x1b[K" + line)
            self.dirty = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        self.close()
        self.stream.write(f"sanpath bench: {text}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.dirty:
            self.stream.write("\n")
            self.stream.flush()
            self.dirty = False


def _summary(r: BenchResult) -> str:
    lat = r.lat_us
    lines = [
        f"{r.rw}: bs={human_size(r.bs)} qd={r.qd} region={human_size(r.region_size)}@{r.region_offset} "
        f"time={r.seconds:.2f}s",
        f"  {r.iops:.0f} IOPS, {r.mbps:.1f} MB/s ({r.ios} I/Os, {r.bytes} bytes; {r.read_ios} reads, "
        f"{r.write_ios} writes)",
        f"  latency us: p50 {lat.p50:.0f}  p99 {lat.p99:.0f}  p99.9 {lat.p999:.0f}  max {lat.max:.0f}  "
        f"mean {lat.mean:.0f}",
        f"  errors {r.errors}  verify failures {r.verify_failures}"
        + (f" ({r.verify_reads} reads checked)" if r.verify else " (not verifying)")
        + f"  max stall {r.max_stall_ms:.1f} ms",
    ]
    if r.stopped_early:
        lines.append(f"  {r.stopped_early}")
    return "\n".join(lines)


COMMANDS = (discover, luns, bench)
