"""Verified I/O through an NBD export, for tests that change the system under a running client: each
write carries its own sequence number, every acknowledged write is remembered, each is read back right
away, and ``check`` reads every block written at the end. A failed request, or a block whose content is
not the last acknowledged write, counts as an error."""

from __future__ import annotations

import asyncio
import contextlib
import random
import struct
from dataclasses import dataclass, field

from ..export.nbd.client import NbdClient

BLOCK = 4096


def _pattern(block: int, seq: int) -> bytes:
    head = struct.pack(">QQ", block, seq)
    return (head * (BLOCK // len(head)))[:BLOCK]


@dataclass
class VerifiedIo:
    client: NbdClient
    blocks: int = 256  # the region written: the first ``blocks`` blocks of the export
    written: dict[int, int] = field(default_factory=dict)  # block -> the sequence number acknowledged last
    ios: int = 0
    errors: list[str] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def connect(cls, socket_path: str, name: str, blocks: int = 256) -> VerifiedIo:
        return cls(await NbdClient.connect_unix(socket_path, name), blocks)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        rng = random.Random(7)
        seq = 0
        while not self._stop.is_set():
            block = rng.randrange(self.blocks)
            seq += 1
            try:
                await self.client.write(block * BLOCK, _pattern(block, seq))
                self.written[block] = seq
                data = bytearray(BLOCK)
                await self.client.read_into(block * BLOCK, data)
            except Exception as e:  # any failure is the test's finding, not a crash of the helper
                self.errors.append(f"block {block} seq {seq}: {type(e).__name__}: {e}")
                return
            self.ios += 2
            if bytes(data) != _pattern(block, seq):
                self.errors.append(f"block {block}: read back something else than write {seq}")
                return
            await asyncio.sleep(0)

    async def until(self, ios: int) -> None:
        """Until ``ios`` more requests have completed (or an error happened)."""
        goal = self.ios + ios
        while self.ios < goal and not self.errors and self._task is not None and not self._task.done():
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    async def check(self, client: NbdClient | None = None) -> list[str]:
        """Read back every block written (through ``client``, by default the same one)."""
        reader = client or self.client
        bad = []
        for block, seq in sorted(self.written.items()):
            data = bytearray(BLOCK)
            await reader.read_into(block * BLOCK, data)
            if bytes(data) != _pattern(block, seq):
                got = struct.unpack(">QQ", bytes(data[:16]))
                bad.append(f"block {block}: expected write {seq}, found block/seq {got}")
        return bad

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.close()
