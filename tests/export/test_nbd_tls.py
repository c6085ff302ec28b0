"""NBD over TLS (NBD_OPT_STARTTLS with x509): the handshake's rules without sockets (a TLS server answers
every option but STARTTLS and ABORT with NBD_REP_ERR_TLS_REQD; a server without TLS refuses STARTTLS),
a listener on an address that is not loopback refused without TLS, and qemu-img with tls-creds-x509
round-tripping data through a TLS export, which refuses it without TLS."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sanpath.aio import within
from sanpath.export.nbd import NbdServer, codec
from sanpath.export.nbd.constants import Option, Rep
from sanpath.export.nbd.protocol import ExportInfo, Next, ServerHandshake
from sanpath.target.backstore import MemoryBackstore
from sanpath.testing.files import random_image, sha256
from sanpath.testing.tls import self_signed
from tests.helpers.gates import require_peer

MiB = 1 << 20
SIZE = 64 * MiB
NAME = "36001405c0ffee00000000000000000aa"
EXPORT = ExportInfo(NAME, SIZE, 512)


def _shaken(tls: bool) -> ServerHandshake:
    hs = ServerHandshake(EXPORT, tls=tls)
    hs.receive_client_flags(b"\x00\x00\x00\x03")  # FIXED_NEWSTYLE | NO_ZEROES
    return hs


def _rep(result_bytes: bytes) -> int:
    return codec.parse_option_reply(result_bytes[:20])[1]


def test_a_tls_server_requires_starttls_first() -> None:
    hs = _shaken(tls=True)
    go = hs.receive_option(Option.GO, codec.encode_info_request(NAME))
    assert go.next is Next.CONTINUE and _rep(go.replies[0]) == Rep.ERR_TLS_REQD
    assert b"requires TLS" in go.replies[0]
    started = hs.receive_option(Option.STARTTLS, b"")
    assert started.next is Next.STARTTLS and _rep(started.replies[0]) == Rep.ACK
    again = hs.receive_option(Option.STARTTLS, b"")
    assert _rep(again.replies[0]) == Rep.ERR_INVALID
    listed = hs.receive_option(Option.LIST, b"")
    assert _rep(listed.replies[-1]) == Rep.ACK  # inside TLS the haggling goes on


def test_export_name_before_tls_closes_and_a_plain_server_refuses_starttls() -> None:
    assert _shaken(tls=True).receive_option(Option.EXPORT_NAME, NAME.encode()).next is Next.CLOSE
    plain = _shaken(tls=False).receive_option(Option.STARTTLS, b"")
    assert plain.next is Next.CONTINUE and _rep(plain.replies[0]) == Rep.ERR_POLICY


async def test_no_clear_nbd_beyond_loopback() -> None:
    server = NbdServer(MemoryBackstore(MiB), NAME)
    with pytest.raises(ValueError, match="not loopback, needs TLS"):
        await server.start_tcp("198.18.0.1", 0)  # refused before any socket is made
    await server.close()


@pytest.fixture
def tmp() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="nbdtls", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


async def run(*args: str, ok: bool = True) -> str:
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await within(proc.communicate(), 240)
    text = out.decode(errors="replace")
    assert (proc.returncode == 0) == ok, f"{' '.join(args)} exited {proc.returncode}:\n{text}"
    return text


async def test_qemu_img_round_trips_data_over_tls_and_is_refused_without(tmp: Path) -> None:
    require_peer("qemu-img", package="qemu-utils")
    cert, key = self_signed(str(tmp))
    creds = tmp / "qemu-tls"
    creds.mkdir()
    shutil.copy(cert, creds / "ca-cert.pem")  # the certificate is its own CA
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = NbdServer(MemoryBackstore(SIZE), NAME, tls=context)
    _, port = await server.start_tcp("127.0.0.1", 0)
    try:
        obj = f"tls-creds-x509,id=tls0,dir={creds},endpoint=client"
        opts = f"driver=nbd,host=127.0.0.1,port={port},export={NAME},tls-creds=tls0"
        src, out = tmp / "src.img", tmp / "out.img"
        random_image(src, SIZE)
        await run("qemu-img", "convert", "-n", "--object", obj, "-f", "raw", str(src), "--target-image-opts", opts)
        await run("qemu-img", "convert", "--object", obj, "--image-opts", opts, "-O", "raw", str(out))
        assert sha256(out) == sha256(src)
        refused = await run("qemu-img", "info", f"nbd://127.0.0.1:{port}/{NAME}", ok=False)
        assert "TLS negotiation required" in refused and "this export requires TLS" in refused, refused
    finally:
        await server.close()
