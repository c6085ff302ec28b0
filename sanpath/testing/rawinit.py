"""A deliberately minimal iSCSI initiator for tests: logs in with plain keys and then sends whatever PDU
(or raw bytes) a test hands it, well-formed or hostile, and reads PDUs back.

It is a PDU factory with a socket, not an initiator: no window, no retries, no error recovery.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import struct
from dataclasses import dataclass, field

from ..iscsi import pdu as P
from ..iscsi import text as T
from ..iscsi.framing import PduReader, frame_pdu

INITIATOR = "iqn.2026-11.org.sanpath.test:raw"

_isids = itertools.count(1)


@dataclass
class RawSession:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    isid: bytes
    cmdsn: int = 0
    expstatsn: int = 0
    itt: int = 1
    header_digest: bool = False
    data_digest: bool = False
    framer: PduReader = field(default_factory=lambda: PduReader(max_data=1 << 24))
    answers: dict[str, str] = field(default_factory=dict)

    async def send(self, pdu: P.Pdu) -> None:
        self.writer.writelines(frame_pdu(pdu, header_digest=self.header_digest, data_digest=self.data_digest))
        await self.writer.drain()

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def recv(self, timeout: float = 10.0) -> P.Pdu | None:
        """The next PDU, or None when the target closed the connection."""
        while True:
            frame = self.framer.next_frame()
            if frame is not None:
                pdu = P.decode(frame.header, frame.data)
                sn = getattr(pdu, "statsn", None)
                if sn is not None and not isinstance(pdu, P.R2T | P.DataIn):
                    self.expstatsn = (sn + 1) & 0xFFFFFFFF
                return pdu
            data = await asyncio.wait_for(self.reader.read(1 << 20), timeout)
            if not data:
                return None
            self.framer.receive_data(data)

    def next_itt(self) -> int:
        itt = self.itt
        self.itt += 1
        return itt

    async def command(self, cdb: bytes, *, lun: int = 0, read: int = 0, write: bytes = b"",
                      immediate: bool = False) -> tuple[int, bytes, bytes]:
        """Run one SCSI command (immediate data only); returns (status, data-in, sense)."""
        itt = self.next_itt()
        edtl = read or len(write)
        await self.send(P.ScsiCommand(immediate=immediate, data=write, read=bool(read), write=bool(write),
                                      lun=P.lun_to_field(lun), itt=itt, edtl=edtl, cmdsn=self.cmdsn,
                                      expstatsn=self.expstatsn, cdb=cdb))
        if not immediate:
            self.cmdsn = (self.cmdsn + 1) & 0xFFFFFFFF
        data = bytearray()
        while True:
            pdu = await self.recv()
            if pdu is None:
                raise ConnectionError("target closed the connection")
            if isinstance(pdu, P.DataIn) and pdu.itt == itt:
                data[pdu.offset : pdu.offset + len(pdu.data)] = pdu.data
                if pdu.has_status:
                    return pdu.status, bytes(data), b""
            elif isinstance(pdu, P.ScsiResponse) and pdu.itt == itt:
                return pdu.status, bytes(data), pdu.sense
            elif isinstance(pdu, P.Reject):
                raise ConnectionError(f"command rejected, reason 0x{pdu.reason:02x}")

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


async def login(host: str, port: int, target: str | None, *, initiator: str = INITIATOR,
                digests: bool = False, extra: dict[str, str] | None = None) -> RawSession:
    """Open a connection and log in straight to full feature phase (no authentication).
    ``target`` None makes a discovery session."""
    reader, writer = await asyncio.open_connection(host, port)
    isid = struct.pack(">BHBH", 0x80, 0x5A5A, 0, next(_isids) & 0xFFFF)
    s = RawSession(reader, writer, isid)
    keys = {"InitiatorName": initiator, "SessionType": "Discovery" if target is None else "Normal",
            "AuthMethod": "None"}
    if target is not None:
        keys["TargetName"] = target
    await s.send(P.LoginRequest(data=T.encode(keys), transit=True, csg=0, nsg=1, isid=isid, itt=0))
    resp = await s.recv()
    if not isinstance(resp, P.LoginResponse) or resp.status_class:
        raise ConnectionError(f"login (security stage) failed: {resp}")
    ops = {"HeaderDigest": "CRC32C" if digests else "None", "DataDigest": "CRC32C" if digests else "None",
           "MaxRecvDataSegmentLength": "262144", "ImmediateData": "Yes", "InitialR2T": "Yes",
           "MaxBurstLength": "262144", "FirstBurstLength": "65536", "ErrorRecoveryLevel": "0",
           "MaxOutstandingR2T": "1", **(extra or {})}
    if target is None:
        ops = {"HeaderDigest": ops["HeaderDigest"], "DataDigest": ops["DataDigest"],
               "MaxRecvDataSegmentLength": "262144"}
    await s.send(P.LoginRequest(data=T.encode(ops), transit=True, csg=1, nsg=3, isid=isid, itt=0,
                                expstatsn=s.expstatsn))
    resp = await s.recv()
    if not isinstance(resp, P.LoginResponse) or resp.status_class or not resp.transit:
        raise ConnectionError(f"login (operational stage) failed: {resp}")
    s.answers = T.decode(resp.data)
    s.cmdsn = resp.expcmdsn
    s.header_digest = s.data_digest = digests
    s.framer.header_digest = s.framer.data_digest = digests
    return s
