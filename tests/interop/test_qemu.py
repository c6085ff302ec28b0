"""qemu-img and qemu-io (libiscsi's iscsi:// driver) against the sanpath target: a full image copied
in through one portal and out through the other, and a sparse image copied after an UNMAP of the
whole LUN, where qemu trusts GET LBA STATUS (SBC-3 5.7) to skip deallocated ranges."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from sanpath.target.spawn import RunningTarget, serve_target
from sanpath.testing.files import random_image, sha256
from tests.helpers.gates import require_peer

IQN = "iqn.2026-11.org.sanpath.test:qemu"
MiB = 1 << 20


def require_qemu() -> None:
    require_peer("qemu-img", "qemu-io", package="qemu-utils")
    out = subprocess.run(["qemu-img", "--help"], capture_output=True, text=True, timeout=30).stdout
    formats = re.search(r"Supported formats:(.*)", out)
    if formats is None or "iscsi" not in formats.group(1).split():
        pytest.fail(
            "qemu-img has no iscsi block driver (its 'Supported formats' lack iscsi); "
            "install the Debian package qemu-block-extra"
        )


def qemu(target: RunningTarget, *args: str) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (
        f"{' '.join(args)} exited {proc.returncode}: {proc.stdout}{proc.stderr}\n"
        f"target log:\n{target.log()[-4000:]}"
    )
    return proc.stdout






def block_map(target: RunningTarget, url: str) -> list[dict[str, object]]:
    """qemu-img map over iscsi://: its zero/data flags come from GET LBA STATUS."""
    extents: list[dict[str, object]] = json.loads(qemu(target, "qemu-img", "map", "-f", "raw", "--output=json", url))
    return extents


def test_convert_in_and_out_through_two_portals(tmp_path: Path) -> None:
    require_qemu()
    src, back = tmp_path / "src.img", tmp_path / "back.img"
    random_image(src, 256 * MiB)
    with serve_target("--iqn", IQN, "--portal", "127.0.0.1:0", "--portal", "127.0.0.2:0",
                      "--lun", f"{tmp_path}/lun.img:256MiB") as t:
        qemu(t, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", str(src), t.url(0, portal=0))
        qemu(t, "qemu-img", "convert", "-f", "raw", "-O", "raw", t.url(0, portal=1), str(back))
    assert back.stat().st_size == 256 * MiB
    assert sha256(back) == sha256(src)


# (offset, length) of the data in the sparse image: whole MiBs, and one small unaligned run
_SPARSE_DATA = [(0, MiB), (7 * MiB, 2 * MiB), (33 * MiB, MiB), (20 * MiB + 512, 4096 + 512), (63 * MiB, MiB)]


@pytest.mark.parametrize("lun", [0, 1], ids=["file", "memory"])
def test_sparse_convert_after_unmap_reads_deallocated_ranges_as_zeros(tmp_path: Path, lun: int) -> None:
    require_qemu()
    size = 64 * MiB
    garbage, sparse, back = tmp_path / "garbage.img", tmp_path / "sparse.img", tmp_path / "back.img"
    random_image(garbage, size)
    with sparse.open("wb") as f:
        f.truncate(size)
        for off, length in _SPARSE_DATA:
            f.seek(off)
            f.write(os.urandom(length))
    with serve_target("--iqn", IQN, "--portal", "127.0.0.1:0", "--portal", "127.0.0.2:0",
                      "--lun", f"{tmp_path}/lun.img:64MiB", "--lun", "mem:64MiB") as t:
        url_in, url_out = t.url(lun, portal=0), t.url(lun, portal=1)
        # every block mapped and holding random data, then all of it UNMAPped
        qemu(t, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", str(garbage), url_in)
        assert all(e["data"] for e in block_map(t, url_in))
        out = qemu(t, "qemu-io", "-f", "raw", "-c", f"discard 0 {size}", url_in)
        assert f"discard {size}/{size} bytes" in out, out
        assert block_map(t, url_out) == [
            {"start": 0, "length": size, "depth": 0, "present": True, "zero": True, "data": False, "offset": 0}
        ]
        # LBPRZ=1 makes the UNMAPped LUN read as zeros, so qemu may skip the sparse image's holes
        qemu(t, "qemu-img", "convert", "-n", "--target-is-zero", "-f", "raw", "-O", "raw", str(sparse), url_in)
        extents = block_map(t, url_out)
        data = [(int(str(e["start"])), int(str(e["length"]))) for e in extents if e["data"]]
        for off, length in _SPARSE_DATA:  # every written byte lies in a mapped extent
            assert any(s <= off and off + length <= s + n for s, n in data), (off, length, extents)
        mapped = sum(n for _, n in data)
        assert mapped <= sum(n for _, n in _SPARSE_DATA) + 64 * 1024, extents  # the rest is deallocated
        assert all(e["zero"] for e in extents if not e["data"])
        # out through the other portal: qemu reads only the mapped extents and zero-fills the rest
        qemu(t, "qemu-img", "convert", "-f", "raw", "-O", "raw", url_out, str(back))
    assert sha256(back) == sha256(sparse)
