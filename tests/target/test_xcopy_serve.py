"""EXTENDED COPY end to end: ``sanpath target serve`` with two file LUNs, LUN 0 filled with random data
through sanpath's initiator, one EXTENDED COPY (LID1) naming both LUs by the NAA designators of their
VPD page 83h, then LUN 1 read back: its sha256 is the source's. RECEIVE COPY RESULTS reports the copy
done. (iscsi-test-cu's ExtendedCopy.Simple does the same within one LU, tests/interop/test_conformance.py.)"""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

from sanpath.aio import within
from sanpath.initiator.device import ScsiDevice
from sanpath.initiator.session import Session, SessionConfig
from sanpath.scsi import cdb
from sanpath.scsi.constants import Association, DesignatorType, ReceiveCopyResultsAction, Status
from sanpath.scsi.parse import parse_copy_operating_parameters, parse_copy_status, parse_device_identification
from sanpath.target.spawn import serve_target

IQN = "iqn.2026-11.org.sanpath.test:xcopy"
SIZE = 48 << 20
BLOCKS_PER_SEGMENT = 16384  # 8 MiB of 512-byte blocks; NUMBER OF BLOCKS is 16 bits


async def naa(dev: ScsiDevice) -> bytes:
    ids = parse_device_identification(await dev.vpd(0x83))
    return next(d.value for d in ids
                if d.designator_type == DesignatorType.NAA and d.association == Association.LOGICAL_UNIT)


async def copy_and_compare(portal: str) -> None:
    host, port = portal.rsplit(":", 1)
    session = await within(Session.open(SessionConfig(host, int(port), IQN, nop_interval=0)), 30)
    try:
        src, dst = await ScsiDevice(session, 0).open(), await ScsiDevice(session, 1).open()
        data = os.urandom(SIZE)
        await src.write(0, data)
        op = parse_copy_operating_parameters((await src.command(
            cdb.receive_copy_results(ReceiveCopyResultsAction.OPERATING_PARAMETERS), read_length=1024)).data)
        segments = [cdb.b2b_segment(0, 1, BLOCKS_PER_SEGMENT, lba, lba)
                    for lba in range(0, SIZE // 512, BLOCKS_PER_SEGMENT)]
        assert len(segments) <= op.max_segment_descriptors
        plist = cdb.xcopy_parameter_list([cdb.cscd_identification(await naa(src), 512),
                                          cdb.cscd_identification(await naa(dst), 512)], segments, list_id=7)
        result = await session.execute(0, cdb.extended_copy(len(plist)), data_out=plist, timeout=120)
        assert result.status == Status.GOOD, result
        status = parse_copy_status((await src.command(
            cdb.receive_copy_results(ReceiveCopyResultsAction.COPY_STATUS, list_id=7), read_length=1024)).data)
        assert (status.copy_manager_status, status.segments_processed) == (1, len(segments))
        assert status.bytes_transferred == SIZE
        copied = await dst.read(0, SIZE)
        assert hashlib.sha256(copied).hexdigest() == hashlib.sha256(data).hexdigest()
    finally:
        await session.close()


def test_extended_copy_between_two_luns_of_a_served_target(tmp_path: Path) -> None:
    with serve_target("--iqn", IQN, "--portal", "127.0.0.1:0", "--lun", f"{tmp_path / 'src.img'}:{SIZE}",
                      "--lun", f"{tmp_path / 'dst.img'}:{SIZE}") as t:
        asyncio.run(copy_and_compare(t.portals[0]))
        assert t.process.poll() is None, t.log()[-2000:]
    # and the copy is on disk, not only in the page cache the target saw
    src, dst = (tmp_path / "src.img").read_bytes(), (tmp_path / "dst.img").read_bytes()
    assert hashlib.sha256(dst).digest() == hashlib.sha256(src).digest()
