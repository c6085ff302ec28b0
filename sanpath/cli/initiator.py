"""``sanpath discover`` and ``sanpath luns``: the initiator from the command line.

Thin over ``sanpath.initiator``: this module parses options, resolves CHAP secrets (from a file or the
environment, never from an option value; see ``options``), and prints. Exit codes: 0 success; 1 the
operation failed (nothing answered, a login was refused, a LUN could not be read); 2 bad input.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import click

from ..errors import ConfigError, SanpathError
from ..initiator.device import LunInfo, ScsiDevice
from ..initiator.discovery import discover as run_discover
from ..initiator.discovery import parse_portals
from ..initiator.session import Session, SessionConfig
from ..units import human_size
from .options import ConnectionOptions, connection_options, fail, iscsi_url, session_config, table

DEVICE_TYPES = {0x00: "disk", 0x01: "tape", 0x03: "processor", 0x05: "cd/dvd", 0x07: "optical", 0x08: "changer",
                0x0C: "raid", 0x0D: "enclosure", 0x0E: "rbc", 0x1E: "wlun", 0x1F: "unknown"}
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
    opts = ConnectionOptions.pop(kw)
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
        click.echo(table(("ADDRESS", "PORT", "TPGT", "IQN"), [(r.address, r.port, r.tpgt, r.iqn) for r in records]))
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
    opts = ConnectionOptions.pop(kw)
    u = iscsi_url(url, need_lun=False)
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
        click.echo(table(("LUN", "TYPE", "SIZE", "VENDOR", "PRODUCT", "SERIAL", "SCSIID"),
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


COMMANDS = (discover, luns)
