"""CRC32C header and data digests (RFC 7143 §11.2.3, Appendix B), computed by the `crc32c` package,
which uses the SSE4.2 / ARMv8 CRC instructions when the CPU has them."""

from __future__ import annotations

import crc32c as _crc32c

from .constants import DIGEST_LENGTH

HARDWARE_ACCELERATED: bool = bool(_crc32c.hardware_based)


def crc32c(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    """CRC32C (Castagnoli) of ``data``, continuing from ``value``."""
    return int(_crc32c.crc32c(data, value))


def digest_bytes(*parts: bytes | bytearray | memoryview) -> bytes:
    """The 4-byte digest of the concatenation of ``parts``, least significant byte first (RFC 7143
    Appendix B.4: the CRC is sent so that its bit 0 ... is transmitted first)."""
    value = 0
    for part in parts:
        value = _crc32c.crc32c(part, value)
    return int(value).to_bytes(DIGEST_LENGTH, "little")
