"""A deliberately minimal iSCSI initiator for tests: logs in (plain or CHAP) and then sends whatever PDU
(or raw bytes) a test hands it, well-formed or hostile, and reads PDUs back.

It is a PDU factory with a socket, not an initiator: no window, no retries, no error recovery.
``command`` runs one SCSI command with immediate data, unsolicited Data-Out and R2T-solicited Data-Out as
the login negotiated, and keeps every PDU it received for the command in ``seen`` for tests to inspect.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import struct
from dataclasses import dataclass, field

from sanpath.aio import within

from ..iscsi import pdu as P
from ..iscsi import text as T
from ..iscsi.auth import ChapInitiator
from ..iscsi.constants import RESERVED_TAG
from ..iscsi.framing import PduReader, frame_pdu

INITIATOR = "iqn.2026-11.org.sanpath.test:raw"

_isids = itertools.count(1)


class LoginRefused(ConnectionError):
    """The target answered a Login Request with a non-zero status (RFC 7143 §11.13.5)."""

    def __init__(self, stage: str, response: P.Pdu | None, session: RawSession) -> None:
        self.response = response
        self.session = session  # still open on our side: a test may check that the target closed it
        self.status = (response.status_class << 8 | response.status_detail
                       if isinstance(response, P.LoginResponse) else None)
        super().__init__(f"login ({stage}) failed: status {self.status}: {response}")


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
    answers: dict[str, str] = field(default_factory=dict)  # the target's operational-stage answers
    seen: list[P.Pdu] = field(default_factory=list)  # every PDU the last ``command`` received

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
            try:
                data = await within(self.reader.read(1 << 20), timeout)
            except ConnectionResetError:
                return None
            if not data:
                return None
            self.framer.receive_data(data)

    async def login_step(self, keys: dict[str, str] | bytes, *, csg: int, nsg: int = 0, transit: bool = True,
                         cont: bool = False, tsih: int = 0, version: int = 0) -> P.Pdu | None:
        """Send one Login Request and return what came back (None: the target closed)."""
        data = keys if isinstance(keys, bytes) else T.encode(keys)
        await self.send(P.LoginRequest(data=data, transit=transit, cont=cont, csg=csg, nsg=nsg if transit else 0,
                                       version_max=version, version_min=version, isid=self.isid, tsih=tsih,
                                       itt=0, cmdsn=self.cmdsn, expstatsn=self.expstatsn))
        return await self.recv()

    def next_itt(self) -> int:
        itt = self.itt
        self.itt += 1
        return itt

    def _param(self, key: str, default: str) -> str:
        return self.answers.get(key, default)

    async def command(self, cdb: bytes, *, lun: int = 0, read: int = 0, write: bytes = b"",
                      immediate: bool = False) -> tuple[int, bytes, bytes]:
        """Run one SCSI command; returns (status, data-in, sense). Write data goes as the login negotiated:
        immediate data, then unsolicited Data-Out up to FirstBurstLength, then Data-Out for each R2T."""
        itt = self.next_itt()
        edtl = read or len(write)
        seg = int(self._param("MaxRecvDataSegmentLength", "8192"))  # what the target can receive
        fbl = self._param("FirstBurstLength", "65536")  # "Irrelevant" when no unsolicited data (§13.14)
        first_burst = min(int(fbl) if fbl.isdigit() else 0, len(write))
        unsolicited = 0 if self._param("InitialR2T", "Yes") == "Yes" else first_burst
        imm = write[: min(seg, first_burst)] if self._param("ImmediateData", "Yes") == "Yes" else b""
        unsolicited = max(unsolicited, len(imm))
        await self.send(P.ScsiCommand(immediate=immediate, data=imm, read=bool(read), write=bool(write),
                                      final=unsolicited == len(imm), lun=P.lun_to_field(lun), itt=itt, edtl=edtl,
                                      cmdsn=self.cmdsn, expstatsn=self.expstatsn, cdb=cdb))
        if not immediate:
            self.cmdsn = (self.cmdsn + 1) & 0xFFFFFFFF
        if unsolicited > len(imm):
            await self.data_out(itt, write, len(imm), unsolicited - len(imm), lun=lun)
        data = bytearray()
        self.seen = []
        while True:
            pdu = await self.recv()
            if pdu is None:
                raise ConnectionError("target closed the connection")
            self.seen.append(pdu)
            if isinstance(pdu, P.R2T) and pdu.itt == itt:
                await self.data_out(itt, write, pdu.offset, pdu.length, ttt=pdu.ttt, lun=lun)
            elif isinstance(pdu, P.DataIn) and pdu.itt == itt:
                data[pdu.offset : pdu.offset + len(pdu.data)] = pdu.data
                if pdu.has_status:
                    return pdu.status, bytes(data), b""
            elif isinstance(pdu, P.ScsiResponse) and pdu.itt == itt:
                return pdu.status, bytes(data), pdu.sense
            elif isinstance(pdu, P.Reject):
                raise ConnectionError(f"command rejected, reason 0x{pdu.reason:02x}")

    async def data_out(self, itt: int, data: bytes, offset: int, length: int, *, ttt: int = RESERVED_TAG,
                       lun: int = 0) -> None:
        """One Data-Out sequence: ``data[offset:offset+length]`` in PDUs the target can receive."""
        seg = int(self._param("MaxRecvDataSegmentLength", "8192"))
        end = offset + length
        for datasn, start in enumerate(range(offset, end, seg)):
            piece = data[start : min(start + seg, end)]
            await self.send(P.DataOut(data=piece, final=start + len(piece) == end, lun=P.lun_to_field(lun),
                                      itt=itt, ttt=ttt, expstatsn=self.expstatsn, datasn=datasn, offset=start))

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


async def connect(host: str, port: int, *, isid: bytes | None = None) -> RawSession:
    """A TCP connection to a portal, not yet logged in; ``isid`` defaults to a fresh random-type ISID."""
    reader, writer = await asyncio.open_connection(host, port)
    isid = isid or struct.pack(">BHBH", 0x80, 0x5A5A, 0, next(_isids) & 0xFFFF)
    return RawSession(reader, writer, isid)


async def login(host: str, port: int, target: str | None, *, initiator: str = INITIATOR,
                digests: bool = False, extra: dict[str, str] | None = None, chap: ChapInitiator | None = None,
                isid: bytes | None = None) -> RawSession:
    """Open a connection and log in to full feature phase, with CHAP when ``chap`` is given (one-way, or
    mutual when it was made with ``target=`` credentials). ``target`` None makes a discovery session.
    Raises ``LoginRefused`` when the target refuses."""
    s = await connect(host, port, isid=isid)

    def check(resp: P.Pdu | None, stage: str, transit: bool = False) -> P.LoginResponse:
        if not isinstance(resp, P.LoginResponse) or resp.status_class or (transit and not resp.transit):
            raise LoginRefused(stage, resp, s)
        return resp

    keys = {"InitiatorName": initiator, "SessionType": "Discovery" if target is None else "Normal",
            "AuthMethod": "CHAP" if chap else "None"}
    if target is not None:
        keys["TargetName"] = target
    if chap is None:
        check(await s.login_step(keys, csg=0, nsg=1), "security stage")
    else:  # AuthMethod, then CHAP_A, then CHAP_N/CHAP_R[/CHAP_I/CHAP_C] (RFC 7143 §12.1.3)
        check(await s.login_step(keys, csg=0, transit=False), "security stage")
        resp = check(await s.login_step(chap.start(), csg=0, transit=False), "CHAP_A")
        answer = chap.receive(T.decode(resp.data))
        resp = check(await s.login_step(answer, csg=0, nsg=1), "CHAP response", transit=True)
        chap.receive(T.decode(resp.data))  # mutual CHAP: checks the target's CHAP_N/CHAP_R
    ops = {"HeaderDigest": "CRC32C" if digests else "None", "DataDigest": "CRC32C" if digests else "None",
           "MaxRecvDataSegmentLength": "262144"}
    if target is not None:
        ops |= {"ImmediateData": "Yes", "InitialR2T": "Yes", "MaxBurstLength": "262144",
                "FirstBurstLength": "65536", "ErrorRecoveryLevel": "0", "MaxOutstandingR2T": "1"}
    ops |= extra or {}
    resp = check(await s.login_step(ops, csg=1, nsg=3), "operational stage", transit=True)
    s.answers = T.decode(resp.data)
    s.cmdsn = resp.expcmdsn
    s.header_digest = s.data_digest = digests
    s.framer.header_digest = s.framer.data_digest = digests
    return s
