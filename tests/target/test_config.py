"""LUN specs from the TOML file and from ``--lun``: sizes, the physical block size (LOGICAL BLOCKS
PER PHYSICAL BLOCK EXPONENT), read-only and serial options, and the errors naming the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sanpath.errors import ConfigError
from sanpath.target.config import LunSpec, parse_config, quick_config
from sanpath.target.profiles import Array

IQN = "iqn.2026-11.org.sanpath.test:config"


def quick_lun(text: str) -> LunSpec:
    return quick_config(IQN, ["127.0.0.1:0"], [text]).targets[0].luns[0]


def toml_lun(**lun: Any) -> LunSpec:
    table = {"target": [{"iqn": IQN, "portal_group": [{"tag": 1, "portals": ["127.0.0.1:0"]}],
                         "lun": [{"id": 0, **lun}]}]}
    return parse_config(table).targets[0].luns[0]


def test_quick_lun_forms(tmp_path: Path) -> None:
    img = tmp_path / "a,b.img"  # a comma in the path is kept: options are only KEY=VALUE of known keys
    spec = quick_lun(f"{img}:8MiB,physical_block_size=4KiB,read_only=false")
    assert (spec.path, spec.size, spec.block_size, spec.lbppbe, spec.physical_block_size) == (
        str(img), 8 << 20, 512, 3, 4096)
    mem = quick_lun("mem:4MiB,block_size=4096,physical_block_size=16KiB,serial=SER1")
    assert (mem.path, mem.size, mem.block_size, mem.lbppbe, mem.serial) == (None, 4 << 20, 4096, 2, "SER1")
    img.write_bytes(bytes(1 << 20))
    ro = quick_lun(f"{img},read_only=yes")
    assert ro.read_only and ro.size is None and ro.lbppbe == 0


def test_toml_physical_block_size() -> None:
    assert toml_lun(memory="1MiB", physical_block_size=4096).lbppbe == 3
    assert toml_lun(memory="1MiB", block_size=4096, physical_block_size="4KiB").lbppbe == 0
    assert toml_lun(memory="1MiB").lbppbe == 0


@pytest.mark.parametrize(("text", "key"), [
    ("mem:1MiB,physical_block_size=1536", "--lun[0].physical_block_size"),  # not a power of two
    ("mem:1MiB,physical_block_size=256", "--lun[0].physical_block_size"),  # smaller than a block
    ("mem:1MiB,physical_block_size=32MiB", "--lun[0].physical_block_size"),  # exponent above 15
    ("mem:1MiB,read_only=maybe", "--lun[0].read_only"),
    ("mem:1MiB,block_size=1000", "--lun[0].block_size"),
    ("mem:1MiB,serial=a,serial=b", "--lun[0].serial"),
    ("mem:1000", "--lun[0].size"),
])
def test_quick_lun_errors(text: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        quick_lun(text)
    assert key in str(err.value)


def test_toml_physical_block_size_error_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"target\[0\]\.lun\[0\]\.physical_block_size"):
        toml_lun(memory="1MiB", physical_block_size="3KiB")


async def test_the_exponent_reaches_the_logical_unit() -> None:
    array = Array(quick_config(IQN, ["127.0.0.1:0"], ["mem:1MiB,physical_block_size=4KiB", "mem:1MiB"]).targets[0])
    try:
        assert [lu.lbppbe for lu in array.luns.values()] == [3, 0]
        assert set(array.luns[0].copy_manager.targets()) == set(array.luns.values())  # XCOPY reaches both
    finally:
        await array.close()
