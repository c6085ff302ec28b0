"""The NBD server over real sockets: real peers (nbdinfo, nbdcopy, qemu-img, qemu-io) against a memory
LUN, and raw clients that misbehave while another client keeps working."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import struct
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sanpath.aio import within
from sanpath.export.nbd import NbdServer, codec
from sanpath.export.nbd.client import NbdClient, NbdError
from sanpath.export.nbd.codec import Request
from sanpath.export.nbd.constants import Cmd, CmdFlag, Errno, Info, Option, Rep, State, TransmissionFlag
from sanpath.target.backstore import MemoryBackstore
from sanpath.testing.files import random_image, sha256
from tests.helpers.gates import require_peer

from .nbd_client import RawClient

MiB = 1 << 20
SIZE = 256 * MiB
NAME = "36001405b1c2d3e4f5a6b7c8d9e0f1a2b"  # an NAA-style SCSI id, as the export name


@dataclass
class Served:
    server: NbdServer
    backstore: MemoryBackstore
    socket: str
    url: str
    tmp: Path


@pytest.fixture
def tmp() -> Iterator[Path]:
    # short, so the unix socket path stays under the 108-byte limit
    d = Path(tempfile.mkdtemp(prefix="nbd", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


async def serve(tmp: Path, **kwargs: object) -> Served:
    backstore = MemoryBackstore(SIZE)
    server = NbdServer(backstore, NAME, **kwargs)  # type: ignore[arg-type]
    sock = await server.start_unix(tmp / "nbd.sock")
    return Served(server, backstore, sock, f"nbd+unix:///{NAME}?socket={sock}", tmp)


@pytest.fixture
async def served(tmp: Path) -> AsyncIterator[Served]:
    s = await serve(tmp)
    yield s
    await s.server.close()


async def run(*args: str, ok: bool | None = True, timeout: float = 240) -> str:
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await within(proc.communicate(), timeout)
    text = out.decode(errors="replace")
    if ok is None:
        return text
    if ok:
        assert proc.returncode == 0, f"{' '.join(args)} exited {proc.returncode}:\n{text}"
    else:
        assert proc.returncode != 0, f"{' '.join(args)} should have failed:\n{text}"
    return text






# --- real peers -------------------------------------------------------------------------------------------

async def test_nbdinfo_reports_size_and_block_sizes(served: Served) -> None:
    require_peer("nbdinfo", package="libnbd-bin")
    info = json.loads(await run("nbdinfo", "--json", served.url))
    [export] = info["exports"]
    assert info["protocol"] == "newstyle-fixed" and info["structured"] is True
    assert export["export-name"] == NAME
    assert export["export-size"] == SIZE
    assert (export["block_size_minimum"], export["block_size_preferred"], export["block_size_maximum"]) == (
        512, 4096, 32 * MiB)
    assert export["is_read_only"] is False
    assert all(export[k] for k in ("can_flush", "can_fua", "can_trim", "can_zero", "can_multi_conn"))
    assert "base:allocation" in export["contexts"]
    listing = await run("nbdinfo", "--list", f"nbd+unix://?socket={served.socket}")
    assert f'export="{NAME}"' in listing


async def test_nbdcopy_round_trip(served: Served) -> None:
    require_peer("nbdcopy", package="libnbd-bin")
    src, out = served.tmp / "src.img", served.tmp / "out.img"
    random_image(src, SIZE)
    await run("nbdcopy", str(src), served.url)
    await run("nbdcopy", served.url, str(out))
    assert sha256(out) == sha256(src)


async def test_qemu_img_convert_in_and_out(served: Served) -> None:
    require_peer("qemu-img", package="qemu-utils")
    src, out = served.tmp / "src.img", served.tmp / "out.img"
    random_image(src, 64 * MiB)
    with src.open("ab") as f:  # a zero tail, which qemu-img may send as WRITE_ZEROES
        f.truncate(SIZE)
    await run("qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", str(src), served.url)
    assert await served.backstore.read(0, MiB) == src.read_bytes()[:MiB]
    await run("qemu-img", "convert", "-f", "raw", "-O", "raw", served.url, str(out))
    assert sha256(out) == sha256(src)
    info = json.loads(await run("qemu-img", "info", "--output=json", "-f", "raw", served.url))
    assert info["virtual-size"] == SIZE


async def test_qemu_io_patterns(served: Served) -> None:
    require_peer("qemu-io", package="qemu-utils")
    out = await run("qemu-io", "-f", "raw", "-c", "write -P 0xab 0 1M", "-c", "read -P 0xab 0 1M",
                    "-c", "write -P 0xcd -f 3M 512k", "-c", "write -z 1M 1M", "-c", "read -P 0 1M 1M",
                    "-c", "discard 8M 1M", "-c", "flush", "-c", "aio_write -P 0x11 16M 64k",
                    "-c", "aio_write -P 0x22 17M 64k", "-c", "aio_flush", "-c", "read -P 0x22 17M 64k",
                    served.url)
    assert "Pattern verification failed" not in out
    assert await served.backstore.read(0, 4096) == b"\xab" * 4096
    assert await served.backstore.read(3 * MiB, 4096) == b"\xcd" * 4096
    bad = await run("qemu-io", "-f", "raw", "-c", "read -P 0x77 0 4k", served.url, ok=None)
    assert "Pattern verification failed" in bad


async def test_read_only_export(tmp: Path) -> None:
    require_peer("nbdinfo", package="libnbd-bin")
    s = await serve(tmp, read_only=True)
    try:
        info = json.loads(await run("nbdinfo", "--json", s.url))
        assert info["exports"][0]["is_read_only"] is True
        c = await RawClient.connect(s.socket)
        await c.go(NAME)
        assert c.flags & TransmissionFlag.READ_ONLY
        r = await c.write(0, b"x" * 512)
        assert r.error == Errno.EPERM
        assert await c.read(0, 512) == bytes(512)
        await c.disconnect()
    finally:
        await s.server.close()


async def test_tcp_on_loopback(tmp: Path) -> None:
    require_peer("nbdinfo", package="libnbd-bin")
    backstore = MemoryBackstore(16 * MiB)
    server = NbdServer(backstore, NAME)
    host, port = await server.start_tcp()
    try:
        assert host == "127.0.0.1" and port > 0
        info = json.loads(await run("nbdinfo", "--json", f"nbd://127.0.0.1:{port}/{NAME}"))
        assert info["exports"][0]["export-size"] == 16 * MiB
        c = await RawClient.connect((host, port))
        await c.go(NAME)
        assert (await c.write(4096, b"t" * 4096)).error == 0
        assert await c.read(4096, 4096) == b"t" * 4096
        await c.disconnect()
    finally:
        await server.close()


# --- raw clients ------------------------------------------------------------------------------------------

async def test_many_requests_in_flight(served: Served) -> None:
    c = await RawClient.connect(served.socket)
    await c.go(NAME)
    n = 300  # more than max_in_flight: reading pauses and resumes
    blobs = {i: os.urandom(64 * 1024) for i in range(n)}
    for i, blob in blobs.items():
        c.send(Cmd.WRITE, i * len(blob), len(blob), blob, flags=CmdFlag.FUA if i % 7 == 0 else 0)
    c.send(Cmd.FLUSH)
    replies = [await c.reply() for _ in range(n + 1)]
    assert all(r.error == 0 for r in replies)
    cookies = {c.send(Cmd.READ, i * 65536, 65536): i for i in range(n)}
    for _ in range(n):
        r = await c.reply()
        assert r.error == 0 and bytes(r.data) == blobs[cookies[r.cookie]]
    await c.disconnect()


async def test_simple_replies_and_unaligned_io(served: Served) -> None:
    """A client on NBD_OPT_EXPORT_NAME never learns the block size: unaligned I/O must still work."""
    c = await RawClient.connect(served.socket)
    await c.export_name(NAME)
    assert c.size == SIZE
    await c.write(0, b"\x01" * 2048)
    r = await c.write(100, b"\x02" * 1000)
    assert r.error == 0 and not r.structured
    assert await c.read(0, 2048) == b"\x01" * 100 + b"\x02" * 1000 + b"\x01" * 948
    assert await c.read(1099, 2) == b"\x02\x01"
    assert (await c.call(Cmd.WRITE_ZEROES, 50, 100)).error == 0
    assert await c.read(0, 200) == b"\x01" * 50 + bytes(100) + b"\x02" * 50
    assert (await c.call(Cmd.TRIM, 10, 5000)).error == 0  # whole blocks inside are unmapped
    assert await c.read(512, 4096 - 512) == bytes(4096 - 512)
    r = await c.call(Cmd.READ, SIZE - 512, 1024)
    assert r.error == Errno.EINVAL and not r.data
    await c.disconnect()


async def test_block_status(served: Served) -> None:
    c = await RawClient.connect(served.socket)
    await c.go(NAME, meta=True)
    await c.write(MiB, b"d" * 128 * 1024)
    r = await c.call(Cmd.BLOCK_STATUS, 0, 4 * MiB)
    assert r.error == 0
    hole = int(State.HOLE | State.ZERO)
    assert r.extents == [(MiB, hole), (128 * 1024, 0), (3 * MiB - 128 * 1024, hole)]
    one = await c.call(Cmd.BLOCK_STATUS, 0, 4 * MiB, flags=CmdFlag.REQ_ONE)
    assert one.extents == [(MiB, hole)]
    assert (await c.call(Cmd.BLOCK_STATUS, SIZE - 512, 1024)).error == Errno.EINVAL
    await c.disconnect()


async def test_option_too_large_then_go(served: Served) -> None:
    c = await RawClient.connect(served.socket)
    await c.greet()
    [(rep, msg)] = await c.option(Option.LIST, b"z" * (100 * 1024))
    assert rep == Rep.ERR_TOO_BIG and msg
    [(rep, _)] = await c.option(Option.GO, codec.encode_info_request("no-such-lun"))
    assert rep == Rep.ERR_UNKNOWN
    replies = await c.option(Option.GO, codec.encode_info_request(NAME, [Info.NAME]))
    assert [r for r, _ in replies] == [Rep.INFO, Rep.INFO, Rep.ACK]
    c.structured = False
    assert (await c.write(0, b"k" * 512)).error == 0
    await c.disconnect()


async def _eof(c: RawClient) -> bool:
    try:
        return await within(c.reader.read(1 << 20), 10) == b"" or await _eof(c)
    except ConnectionError:
        return True


async def _bad_magic_request(c: RawClient) -> None:
    await c.go(NAME)
    c.writer.write(b"\xde\xad\xbe\xef" + bytes(24))
    assert await _eof(c)


async def _bad_magic_option(c: RawClient) -> None:
    await c.greet()
    c.writer.write(b"NOTIHAVE" + bytes(8))
    assert await _eof(c)


async def _unknown_client_flags(c: RawClient) -> None:
    await c.greet(flags=0x80)
    assert await _eof(c)


async def _oversized_read(c: RawClient) -> None:
    await c.go(NAME)
    r = await c.call(Cmd.READ, 0, 64 * MiB)
    assert r.error == Errno.EOVERFLOW and "exceeds" in r.message
    assert await c.read(0, 512) == bytes(512)  # the connection goes on


async def _oversized_write(c: RawClient) -> None:
    await c.go(NAME, structured=False)
    big = 33 * MiB
    r = await c.write(0, b"\x55" * big)  # the payload is read and dropped
    assert r.error == Errno.EINVAL
    assert await c.read(0, 512) == bytes(512)


async def _past_the_end(c: RawClient) -> None:
    await c.go(NAME)
    assert (await c.call(Cmd.READ, SIZE, 512)).error == Errno.EINVAL
    assert (await c.write(SIZE - 512, b"e" * 1024)).error == Errno.ENOSPC
    assert (await c.call(Cmd.WRITE_ZEROES, SIZE, 512)).error == Errno.ENOSPC
    assert (await c.call(Cmd.READ, (1 << 64) - 512, 512)).error == Errno.EINVAL
    assert (await c.call(Cmd.CACHE, 0, 512)).error == Errno.EINVAL
    assert (await c.call(Cmd.READ, 0, 512, flags=0x4000)).error == Errno.EINVAL
    assert await c.read(SIZE - 512, 512) == bytes(512)


async def _disconnect_mid_request(c: RawClient) -> None:
    await c.go(NAME)
    c.writer.write(codec.encode_request(Request(0, Cmd.WRITE, 1, 0, MiB)) + b"\x66" * (MiB // 2))
    await c.writer.drain()


async def _disconnect_with_reads_in_flight(c: RawClient) -> None:
    await c.go(NAME)
    for i in range(40):
        c.send(Cmd.READ, i * MiB, MiB)
    await c.writer.drain()


async def _disconnect_mid_handshake(c: RawClient) -> None:
    await c.greet()
    c.writer.write(codec.encode_option(Option.GO, codec.encode_info_request(NAME))[:20])
    await c.writer.drain()


@pytest.mark.parametrize("misbehave", [
    _bad_magic_request, _bad_magic_option, _unknown_client_flags, _oversized_read, _oversized_write,
    _past_the_end, _disconnect_mid_request, _disconnect_with_reads_in_flight, _disconnect_mid_handshake,
])
async def test_misbehaving_client_does_not_disturb_others(served: Served, misbehave: object) -> None:
    good = await RawClient.connect(served.socket)
    await good.go(NAME)
    await good.write(8 * MiB, b"\x42" * 65536)
    bad = await RawClient.connect(served.socket)
    await misbehave(bad)  # type: ignore[operator]
    await bad.close()
    for i in range(5):
        data = bytes([i]) * 65536
        assert (await good.write(9 * MiB + i * 65536, data)).error == 0
        assert await good.read(9 * MiB + i * 65536, 65536) == data
    assert await good.read(8 * MiB, 65536) == b"\x42" * 65536
    await good.disconnect()
    for _ in range(100):  # the misbehaving connection is cleaned up
        if len(served.server.connections) == 0:
            break
        await asyncio.sleep(0.05)
    assert len(served.server.connections) == 0
    assert await served.backstore.read(0, 512) == bytes(512)  # a dropped or torn-off write never lands


async def test_disc_lets_in_flight_requests_finish(served: Served) -> None:
    c = await RawClient.connect(served.socket)
    await c.go(NAME)
    for i in range(20):
        c.send(Cmd.WRITE, i * MiB, MiB, bytes([i + 1]) * MiB)
    c.send(Cmd.DISC)
    replies = [await c.reply() for _ in range(20)]
    assert all(r.error == 0 for r in replies)
    assert await _eof(c)
    assert await served.backstore.read(19 * MiB, 512) == bytes([20]) * 512


async def test_half_close_still_answers_requests_already_sent(served: Served) -> None:
    c = await RawClient.connect(served.socket)
    await c.go(NAME, structured=False)
    for i in range(100):
        c.send(Cmd.WRITE, i * 65536, 65536, bytes([i]) * 65536)
    c.writer.write_eof()
    replies = [await c.reply() for _ in range(100)]
    assert all(r.error == 0 for r in replies)
    assert await _eof(c)
    assert await served.backstore.read(99 * 65536, 512) == bytes([99]) * 512


async def test_handshake_timeout_and_abort(tmp: Path) -> None:
    s = await serve(tmp, handshake_timeout=0.3)
    try:
        idle = await RawClient.connect(s.socket)
        await idle.greet()
        assert await _eof(idle)
        c = await RawClient.connect(s.socket)
        await c.greet()
        [(rep, _)] = await c.option(Option.ABORT)
        assert rep == Rep.ACK
        assert await _eof(c)
    finally:
        await s.server.close()


class GatedBackstore(MemoryBackstore):
    """Reads wait at a gate, so a request can be held in flight."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def read(self, offset: int, length: int) -> bytes:
        self.entered.set()
        await self.gate.wait()
        return await super().read(offset, length)


async def test_close_answers_in_flight_requests_then_ends_every_connection(tmp: Path) -> None:
    backstore = GatedBackstore(16 * MiB)
    server = NbdServer(backstore, NAME)
    sock = await server.start_unix(tmp / "nbd.sock")
    clients = [await RawClient.connect(sock) for _ in range(3)]
    for c in clients[:2]:
        await c.go(NAME)
    clients[0].send(Cmd.READ, 0, MiB)
    await within(backstore.entered.wait(), 10)
    closing = asyncio.create_task(server.close())
    await asyncio.sleep(0.1)
    assert not closing.done()  # waiting for the read in flight
    backstore.gate.set()
    r = await clients[0].reply()
    assert r.error == 0 and bytes(r.data) == bytes(MiB)
    await within(closing, 10)
    assert len(server.connections) == 0
    for c in clients:
        assert await _eof(c)
    assert not os.path.exists(sock)


async def test_a_request_after_the_server_ended_the_connection_fails_at_once(served: Served) -> None:
    """Maintenance mode's --force ends the clients: a request the client sends after that must fail, not
    wait for ever for a reply that cannot come."""
    client = await NbdClient.connect_unix(served.socket, NAME)
    await client.write(0, bytes(4096))
    assert await served.server.disconnect_clients(grace=1) == 1
    assert client._receiver is not None
    await within(asyncio.shield(client._receiver), 10)  # the client has seen the end of the connection
    with pytest.raises(NbdError, match="closed the connection"):
        await within(client.write(0, bytes(4096)), 10)
    await client.close()
    with pytest.raises(NbdError, match="this client closed"):
        await within(client.flush(), 10)


async def test_export_name_of_unknown_export_closes(served: Served) -> None:
    c = await RawClient.connect(served.socket)
    await c.greet()
    c.writer.write(codec.encode_option(Option.EXPORT_NAME, b"wrong"))
    assert await _eof(c)


def test_struct_sanity() -> None:
    assert struct.calcsize(">IHHQQI") == 28
