"""The whole stack under an NBD consumer: a sanpath target with a 1 GiB LUN on two portals, one
iSCSI session per portal folded into a MultipathDevice, exported over NBD under its SCSI id. qemu-img
converts a random 1 GiB image into the LUN, nbdcopy copies it back out, and the checksums match."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
from pathlib import Path

from sanpath.aio import within
from sanpath.export.nbd import NbdServer
from sanpath.initiator.discovery import DiscoveredTarget
from sanpath.initiator.session import SessionConfig
from sanpath.multipath.discovery import MultipathSpec, build_devices
from sanpath.multipath.policy import Policy
from sanpath.multipath.sessions import SessionPool
from sanpath.testing.files import sha256
from sanpath.testing.inproc import TEST_IQN, running_target
from tests.helpers.gates import require_peer

MiB = 1 << 20
GiB = 1 << 30


async def run(*args: str, timeout: float = 280) -> str:
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await within(proc.communicate(), timeout)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, f"{' '.join(args)} exited {proc.returncode}:\n{text}"
    return text




async def test_qemu_img_and_nbdcopy_through_multipath_nbd_export() -> None:
    require_peer("qemu-img", package="qemu-utils")
    require_peer("nbdcopy", "nbdinfo", package="libnbd-bin")
    tmp = Path(tempfile.mkdtemp(prefix="nbdi", dir="/tmp"))
    try:
        src, out = tmp / "src.img", tmp / "out.img"
        with src.open("wb") as f:
            for _ in range(GiB // (4 * MiB)):
                f.write(os.urandom(4 * MiB))
        async with running_target(luns=(f"mem:{GiB}",), portals=("127.0.0.1:0", "127.0.0.2:0")) as target:
            records = [DiscoveredTarget(host, port, 1, TEST_IQN) for host, port in target.portals]
            pool = SessionPool()
            try:
                [device] = await build_devices(records, MultipathSpec(()), SessionConfig(""), Policy(), pool)
                assert device.active_paths == 2
                server = NbdServer(device, device.wwid)
                sock = await server.start_unix(tmp / "nbd.sock")
                url = f"nbd+unix:///{device.wwid}?socket={sock}"
                try:
                    info = json.loads(await run("nbdinfo", "--json", url))
                    export = info["exports"][0]
                    assert export["export-size"] == GiB and export["export-name"] == device.wwid
                    assert export["block_size_minimum"] == device.block_size
                    await run("qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", str(src), url)
                    await run("nbdcopy", url, str(out))
                    assert sha256(out) == sha256(src)
                finally:
                    await server.close()
            finally:
                await pool.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
