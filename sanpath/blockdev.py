"""The BlockDevice protocol: the seam between layers (backstore, session, multipath device, export)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class BlockDevice(Protocol):
    """A byte-addressed device made of fixed-size blocks. Offsets and lengths are in bytes and
    multiples of ``block_size``."""

    @property
    def size(self) -> int: ...

    @property
    def block_size(self) -> int: ...

    async def read(self, offset: int, length: int) -> bytes | bytearray: ...

    async def write(self, offset: int, data: bytes | memoryview, *, fua: bool = False) -> None: ...

    async def flush(self) -> None: ...

    async def unmap(self, offset: int, length: int) -> None: ...
