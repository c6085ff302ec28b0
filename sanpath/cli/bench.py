"""``sanpath bench``: a fio-like load on one LUN, over one path (URL) or every path (``--target``).

Thin over ``sanpath.workload``: this module parses options, prints progress to stderr and the result to
stdout. Exit codes: 0 success; 1 an I/O failed or a verify check found wrong data; 2 bad input.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import replace
from typing import Any

import click

from ..errors import SanpathError
from ..initiator.device import ScsiDevice
from ..initiator.session import Session, SessionConfig
from ..units import human_size
from ..workload.bench import BenchResult, BenchSpec, Progress
from ..workload.runner import BenchSetupError, run_engine
from .options import SIZE, ConnectionOptions, connection_options, fail, iscsi_url, session_config


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
    opts = ConnectionOptions.pop(kw)
    spec = BenchSpec(rw=rw, bs=bs, qd=qd, seconds=seconds, verify=verify, offset=offset, size=size,
                     rwmix_read=rwmixread, max_errors=max_errors, seed=seed)
    if (url is None) == (mp_targets is None):
        fail("bench", "give either a URL (one path) or --target (multipath)", 2)
    printer = None if quiet else ProgressPrinter(rw, sys.stderr)
    extra: dict[str, Any] = {}
    try:
        if mp_targets is not None:
            from ..workload.multipath_bench import multipath_bench

            # with --target, --source may list one address per storage NIC
            config = replace(session_config(opts, "", 3260, None), source=None)
            result, extra = asyncio.run(multipath_bench(
                config, mp_targets, mp_iqn, mp_scsi_id, opts.source or "", mp_config, list(mp_set), spec, printer))
        else:
            assert url is not None
            u = iscsi_url(url, need_lun=True)
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
        click.echo(summary(result))
        if "topology" in extra:
            click.echo(extra["topology"])
    for m in result.messages:
        click.echo(f"sanpath bench: {m}", err=True)
    if result.errors or result.verify_failures:
        sys.exit(1)


async def _bench(config: SessionConfig, lun: int, spec: BenchSpec, printer: ProgressPrinter | None) -> BenchResult:
    session = await Session.open(config)
    try:
        device = await ScsiDevice(session, lun).open()
        return await run_engine(device, f"LUN {lun}", spec, printer)
    finally:
        await session.logout()


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


def summary(r: BenchResult) -> str:
    """The text result: pattern and region, rates, latency percentiles, errors and the longest stall."""
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
