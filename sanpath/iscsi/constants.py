"""iSCSI numbers from RFC 7143: opcodes, flags, login status, reject reasons, task management codes.

Section numbers in comments refer to RFC 7143 (iSCSI Protocol, consolidated).
"""

from __future__ import annotations

from enum import IntEnum

BHS_LENGTH = 48  # §11.2.1: every PDU starts with a 48-byte Basic Header Segment
DIGEST_LENGTH = 4  # §11.2.3: CRC32C header and data digests
RESERVED_TAG = 0xFFFFFFFF  # §11.2.1.8 etc.: "no tag" for ITT/TTT
ISCSI_VERSION = 0x00  # §11.12.4: VersionMax/VersionMin are 0x00 for RFC 7143 (and 3720)
DEFAULT_PORT = 3260  # §13.1: the well-known port for iSCSI
MAX_DATA_SEGMENT = (1 << 24) - 1  # §13.12: MaxRecvDataSegmentLength range 512..2**24-1


class Opcode(IntEnum):
    """§11.2.1.2: opcodes. Initiator opcodes are 0x00-0x1f, target opcodes 0x20-0x3f."""

    NOP_OUT = 0x00
    SCSI_COMMAND = 0x01
    TASK_MGMT_REQUEST = 0x02
    LOGIN_REQUEST = 0x03
    TEXT_REQUEST = 0x04
    DATA_OUT = 0x05
    LOGOUT_REQUEST = 0x06
    SNACK = 0x10
    NOP_IN = 0x20
    SCSI_RESPONSE = 0x21
    TASK_MGMT_RESPONSE = 0x22
    LOGIN_RESPONSE = 0x23
    TEXT_RESPONSE = 0x24
    DATA_IN = 0x25
    LOGOUT_RESPONSE = 0x26
    R2T = 0x31
    ASYNC_MESSAGE = 0x32
    REJECT = 0x3F


class Stage(IntEnum):
    """§11.12.3: login stages (CSG/NSG)."""

    SECURITY = 0
    OPERATIONAL = 1
    FULL_FEATURE = 3


class LoginStatus(IntEnum):
    """§11.13.5: login response Status-Class << 8 | Status-Detail."""

    SUCCESS = 0x0000
    TARGET_MOVED_TEMPORARILY = 0x0101
    TARGET_MOVED_PERMANENTLY = 0x0102
    INITIATOR_ERROR = 0x0200
    AUTHENTICATION_FAILURE = 0x0201
    AUTHORIZATION_FAILURE = 0x0202
    NOT_FOUND = 0x0203
    TARGET_REMOVED = 0x0204
    UNSUPPORTED_VERSION = 0x0205
    TOO_MANY_CONNECTIONS = 0x0206
    MISSING_PARAMETER = 0x0207
    CANT_INCLUDE_IN_SESSION = 0x0208
    SESSION_TYPE_NOT_SUPPORTED = 0x0209
    SESSION_DOES_NOT_EXIST = 0x020A
    INVALID_DURING_LOGIN = 0x020B
    TARGET_ERROR = 0x0300
    SERVICE_UNAVAILABLE = 0x0301
    OUT_OF_RESOURCES = 0x0302


class RejectReason(IntEnum):
    """§11.17.1: reasons carried by a Reject PDU."""

    DATA_DIGEST_ERROR = 0x02
    SNACK_REJECT = 0x03
    PROTOCOL_ERROR = 0x04
    COMMAND_NOT_SUPPORTED = 0x05
    IMMEDIATE_COMMAND_REJECT = 0x06
    TASK_IN_PROGRESS = 0x07
    INVALID_DATA_ACK = 0x08
    INVALID_PDU_FIELD = 0x09
    LONG_OPERATION_REJECT = 0x0A
    DEPRECATED = 0x0B
    WAITING_FOR_LOGOUT = 0x0C


class TaskFunction(IntEnum):
    """§11.5.1: task management functions."""

    ABORT_TASK = 1
    ABORT_TASK_SET = 2
    CLEAR_ACA = 3
    CLEAR_TASK_SET = 4
    LOGICAL_UNIT_RESET = 5
    TARGET_WARM_RESET = 6
    TARGET_COLD_RESET = 7
    TASK_REASSIGN = 8


class TaskResponse(IntEnum):
    """§11.6.1: task management function responses."""

    COMPLETE = 0
    TASK_DOES_NOT_EXIST = 1
    LUN_DOES_NOT_EXIST = 2
    TASK_STILL_ALLEGIANT = 3
    REASSIGNMENT_NOT_SUPPORTED = 4
    NOT_SUPPORTED = 5
    AUTHORIZATION_FAILED = 6
    REJECTED = 255


class LogoutReason(IntEnum):
    """§11.14.1: logout reason codes."""

    CLOSE_SESSION = 0
    CLOSE_CONNECTION = 1
    REMOVE_CONNECTION_FOR_RECOVERY = 2


class LogoutResponse(IntEnum):
    """§11.15.1: logout responses."""

    SUCCESS = 0
    CID_NOT_FOUND = 1
    RECOVERY_NOT_SUPPORTED = 2
    CLEANUP_FAILED = 3


class ScsiServiceResponse(IntEnum):
    """§11.4.3: the Response field of a SCSI Response PDU."""

    COMPLETED = 0x00
    TARGET_FAILURE = 0x01


class AsyncEvent(IntEnum):
    """§11.9.1: asynchronous message events."""

    SCSI_EVENT = 0
    LOGOUT_REQUEST = 1
    DROP_CONNECTION = 2
    DROP_ALL_CONNECTIONS = 3
    RENEGOTIATE = 4
    VENDOR = 255


class TaskAttribute(IntEnum):
    """§11.3.1.3: task attributes in a SCSI Command."""

    UNTAGGED = 0
    SIMPLE = 1
    ORDERED = 2
    HEAD_OF_QUEUE = 3
    ACA = 4


class AhsType(IntEnum):
    """§11.2.2: additional header segment types."""

    EXTENDED_CDB = 1
    BIDI_READ_LENGTH = 2
