"""SCSI numbers used by sanpath: operation codes, SAM status, sense keys, ASC/ASCQ pairs, VPD page
codes, mode pages, persistent-reservation codes and ALUA states.

Sources: SAM-5 (status codes, 5.3), SPC-4 (sense keys table 48, ASC/ASCQ annex D, VPD pages 7.8,
PERSISTENT RESERVE 6.15/6.16, REPORT TARGET PORT GROUPS 6.37, asymmetric access states 5.15.2.4),
SBC-3 (block commands 5, block VPD pages 6.5, mode pages 6.4).
"""

from __future__ import annotations

from enum import IntEnum


class Opcode(IntEnum):
    """Operation codes (SPC-4 annex E, SBC-3 table 19)."""

    TEST_UNIT_READY = 0x00
    REQUEST_SENSE = 0x03
    READ_6 = 0x08
    WRITE_6 = 0x0A
    INQUIRY = 0x12
    MODE_SELECT_6 = 0x15
    RESERVE_6 = 0x16
    RELEASE_6 = 0x17
    MODE_SENSE_6 = 0x1A
    START_STOP_UNIT = 0x1B
    PREVENT_ALLOW_MEDIUM_REMOVAL = 0x1E
    READ_CAPACITY_10 = 0x25
    READ_10 = 0x28
    WRITE_10 = 0x2A
    WRITE_AND_VERIFY_10 = 0x2E
    VERIFY_10 = 0x2F
    PRE_FETCH_10 = 0x34
    SYNCHRONIZE_CACHE_10 = 0x35
    READ_DEFECT_DATA_10 = 0x37
    WRITE_SAME_10 = 0x41
    UNMAP = 0x42
    MODE_SELECT_10 = 0x55
    RESERVE_10 = 0x56
    RELEASE_10 = 0x57
    MODE_SENSE_10 = 0x5A
    PERSISTENT_RESERVE_IN = 0x5E
    PERSISTENT_RESERVE_OUT = 0x5F
    EXTENDED_COPY = 0x83
    RECEIVE_COPY_RESULTS = 0x84
    READ_16 = 0x88
    COMPARE_AND_WRITE = 0x89
    WRITE_16 = 0x8A
    ORWRITE_16 = 0x8B
    WRITE_AND_VERIFY_16 = 0x8E
    VERIFY_16 = 0x8F
    PRE_FETCH_16 = 0x90
    SYNCHRONIZE_CACHE_16 = 0x91
    WRITE_SAME_16 = 0x93
    WRITE_ATOMIC_16 = 0x9C
    SERVICE_ACTION_IN_16 = 0x9E
    REPORT_LUNS = 0xA0
    MAINTENANCE_IN = 0xA3
    MAINTENANCE_OUT = 0xA4
    READ_12 = 0xA8
    WRITE_12 = 0xAA
    WRITE_AND_VERIFY_12 = 0xAE
    VERIFY_12 = 0xAF
    READ_DEFECT_DATA_12 = 0xB7


class ServiceActionIn16(IntEnum):
    """SERVICE ACTION IN(16) service actions (SBC-3 table 19)."""

    READ_CAPACITY_16 = 0x10
    GET_LBA_STATUS = 0x12


class ExtendedCopyAction(IntEnum):
    """EXTENDED COPY service actions (SPC-4 6.4): only the list identifier 1 form is implemented."""

    EXTENDED_COPY_LID1 = 0x00


class ReceiveCopyResultsAction(IntEnum):
    """RECEIVE COPY RESULTS service actions (SPC-3 6.17; the LID1 forms)."""

    COPY_STATUS = 0x00
    RECEIVE_DATA = 0x01
    OPERATING_PARAMETERS = 0x03
    FAILED_SEGMENT_DETAILS = 0x04


class MaintenanceIn(IntEnum):
    """MAINTENANCE IN service actions (SPC-4 table E.x)."""

    REPORT_TARGET_PORT_GROUPS = 0x0A
    REPORT_SUPPORTED_OPERATION_CODES = 0x0C


class Status(IntEnum):
    """SAM-5 5.3 status codes."""

    GOOD = 0x00
    CHECK_CONDITION = 0x02
    CONDITION_MET = 0x04
    BUSY = 0x08
    RESERVATION_CONFLICT = 0x18
    TASK_SET_FULL = 0x28
    ACA_ACTIVE = 0x30
    TASK_ABORTED = 0x40


class SenseKey(IntEnum):
    """SPC-4 4.5.6 table 48 sense keys."""

    NO_SENSE = 0x0
    RECOVERED_ERROR = 0x1
    NOT_READY = 0x2
    MEDIUM_ERROR = 0x3
    HARDWARE_ERROR = 0x4
    ILLEGAL_REQUEST = 0x5
    UNIT_ATTENTION = 0x6
    DATA_PROTECT = 0x7
    BLANK_CHECK = 0x8
    VENDOR_SPECIFIC = 0x9
    COPY_ABORTED = 0xA
    ABORTED_COMMAND = 0xB
    VOLUME_OVERFLOW = 0xD
    MISCOMPARE = 0xE


# --- Additional sense code / qualifier pairs (SPC-4 annex D) -------------------------------------
AscPair = tuple[int, int]

NO_ADDITIONAL_SENSE: AscPair = (0x00, 0x00)
OPERATION_IN_PROGRESS: AscPair = (0x00, 0x16)
LU_NOT_READY_CAUSE_NOT_REPORTABLE: AscPair = (0x04, 0x00)
LU_NOT_ACCESSIBLE_TRANSITIONING: AscPair = (0x04, 0x0A)
LU_NOT_ACCESSIBLE_STANDBY: AscPair = (0x04, 0x0B)
LU_NOT_ACCESSIBLE_UNAVAILABLE: AscPair = (0x04, 0x0C)
UNREACHABLE_COPY_TARGET: AscPair = (0x08, 0x04)
WRITE_ERROR: AscPair = (0x0C, 0x00)
COPY_TARGET_DEVICE_NOT_REACHABLE: AscPair = (0x0D, 0x02)
INCORRECT_COPY_TARGET_DEVICE_TYPE: AscPair = (0x0D, 0x03)
UNRECOVERED_READ_ERROR: AscPair = (0x11, 0x00)
MISCOMPARE_DURING_VERIFY: AscPair = (0x1D, 0x00)
PARAMETER_LIST_LENGTH_ERROR: AscPair = (0x1A, 0x00)
INVALID_COMMAND_OPERATION_CODE: AscPair = (0x20, 0x00)
LBA_OUT_OF_RANGE: AscPair = (0x21, 0x00)
INVALID_FIELD_IN_CDB: AscPair = (0x24, 0x00)
LU_NOT_SUPPORTED: AscPair = (0x25, 0x00)
INVALID_FIELD_IN_PARAMETER_LIST: AscPair = (0x26, 0x00)
INVALID_RELEASE_OF_PERSISTENT_RESERVATION: AscPair = (0x26, 0x04)
TOO_MANY_TARGET_DESCRIPTORS: AscPair = (0x26, 0x06)
UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE: AscPair = (0x26, 0x07)
TOO_MANY_SEGMENT_DESCRIPTORS: AscPair = (0x26, 0x08)
UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE: AscPair = (0x26, 0x09)
UNEXPECTED_INEXACT_SEGMENT: AscPair = (0x26, 0x0A)
INLINE_DATA_LENGTH_EXCEEDED: AscPair = (0x26, 0x0B)
WRITE_PROTECTED: AscPair = (0x27, 0x00)
POWER_ON_RESET_OR_BUS_DEVICE_RESET: AscPair = (0x29, 0x00)
POWER_ON_OCCURRED: AscPair = (0x29, 0x01)
SCSI_BUS_RESET_OCCURRED: AscPair = (0x29, 0x02)
BUS_DEVICE_RESET_FUNCTION_OCCURRED: AscPair = (0x29, 0x03)
I_T_NEXUS_LOSS_OCCURRED: AscPair = (0x29, 0x07)
PARAMETERS_CHANGED: AscPair = (0x2A, 0x00)
MODE_PARAMETERS_CHANGED: AscPair = (0x2A, 0x01)
RESERVATIONS_PREEMPTED: AscPair = (0x2A, 0x03)
RESERVATIONS_RELEASED: AscPair = (0x2A, 0x04)
REGISTRATIONS_PREEMPTED: AscPair = (0x2A, 0x05)
ASYMMETRIC_ACCESS_STATE_CHANGED: AscPair = (0x2A, 0x06)
COMMANDS_CLEARED_BY_ANOTHER_INITIATOR: AscPair = (0x2F, 0x00)
SAVING_PARAMETERS_NOT_SUPPORTED: AscPair = (0x39, 0x00)
REPORTED_LUNS_DATA_HAS_CHANGED: AscPair = (0x3F, 0x0E)
CAPACITY_DATA_HAS_CHANGED: AscPair = (0x2A, 0x09)


class PeripheralQualifier(IntEnum):
    """SPC-4 table 135: byte 0 bits 7-5 of INQUIRY data."""

    CONNECTED = 0b000
    NOT_CONNECTED = 0b001
    NOT_CAPABLE = 0b011  # the target cannot have a logical unit at this LUN


class PeripheralDeviceType(IntEnum):
    """SPC-4 table 136 (subset)."""

    DIRECT_ACCESS = 0x00
    SEQUENTIAL_ACCESS = 0x01
    ENCLOSURE = 0x0D
    WELL_KNOWN_LU = 0x1E
    UNKNOWN = 0x1F


class VpdPage(IntEnum):
    """Vital product data page codes (SPC-4 7.8, SBC-3 6.5)."""

    SUPPORTED_VPD_PAGES = 0x00
    UNIT_SERIAL_NUMBER = 0x80
    DEVICE_IDENTIFICATION = 0x83
    EXTENDED_INQUIRY_DATA = 0x86
    BLOCK_LIMITS = 0xB0
    BLOCK_DEVICE_CHARACTERISTICS = 0xB1
    LOGICAL_BLOCK_PROVISIONING = 0xB2


class CodeSet(IntEnum):
    """Designation descriptor CODE SET (SPC-4 table 589)."""

    BINARY = 1
    ASCII = 2
    UTF8 = 3


class Association(IntEnum):
    """Designation descriptor ASSOCIATION (SPC-4 table 590)."""

    LOGICAL_UNIT = 0
    TARGET_PORT = 1
    TARGET_DEVICE = 2


class DesignatorType(IntEnum):
    """Designation descriptor DESIGNATOR TYPE (SPC-4 table 591)."""

    VENDOR_SPECIFIC = 0
    T10_VENDOR_ID = 1
    EUI64 = 2
    NAA = 3
    RELATIVE_TARGET_PORT = 4
    TARGET_PORT_GROUP = 5
    LOGICAL_UNIT_GROUP = 6
    MD5_LU_IDENTIFIER = 7
    SCSI_NAME_STRING = 8
    PROTOCOL_SPECIFIC_PORT = 9


PROTOCOL_ID_ISCSI = 0x5
"""SPC-4 table 362: protocol identifier of iSCSI (used in designators and TransportIDs)."""


class ModePage(IntEnum):
    """Mode page codes (SPC-4 7.5, SBC-3 6.4)."""

    READ_WRITE_ERROR_RECOVERY = 0x01
    CACHING = 0x08
    CONTROL = 0x0A
    ALL_PAGES = 0x3F


class PageControl(IntEnum):
    """MODE SENSE PC field (SPC-4 table 180)."""

    CURRENT = 0
    CHANGEABLE = 1
    DEFAULT = 2
    SAVED = 3


class PrInAction(IntEnum):
    """PERSISTENT RESERVE IN service actions (SPC-4 table 166)."""

    READ_KEYS = 0x00
    READ_RESERVATION = 0x01
    REPORT_CAPABILITIES = 0x02
    READ_FULL_STATUS = 0x03


class PrOutAction(IntEnum):
    """PERSISTENT RESERVE OUT service actions (SPC-4 table 177)."""

    REGISTER = 0x00
    RESERVE = 0x01
    RELEASE = 0x02
    CLEAR = 0x03
    PREEMPT = 0x04
    PREEMPT_AND_ABORT = 0x05
    REGISTER_AND_IGNORE_EXISTING_KEY = 0x06
    REGISTER_AND_MOVE = 0x07


class PrType(IntEnum):
    """Persistent reservation TYPE codes (SPC-4 table 169)."""

    WRITE_EXCLUSIVE = 0x1
    EXCLUSIVE_ACCESS = 0x3
    WRITE_EXCLUSIVE_REGISTRANTS_ONLY = 0x5
    EXCLUSIVE_ACCESS_REGISTRANTS_ONLY = 0x6
    WRITE_EXCLUSIVE_ALL_REGISTRANTS = 0x7
    EXCLUSIVE_ACCESS_ALL_REGISTRANTS = 0x8


PR_SCOPE_LU = 0x0
"""Persistent reservation SCOPE: LU_SCOPE, the only scope SPC-4 still defines (6.15.3.2)."""


class AluaState(IntEnum):
    """Target port asymmetric access states (SPC-4 5.15.2.4, table 165 in RTPG)."""

    ACTIVE_OPTIMIZED = 0x0
    ACTIVE_NON_OPTIMIZED = 0x1
    STANDBY = 0x2
    UNAVAILABLE = 0x3
    LOGICAL_BLOCK_DEPENDENT = 0x4
    OFFLINE = 0xE
    TRANSITIONING = 0xF


class Tpgs(IntEnum):
    """Standard INQUIRY TPGS field (SPC-4 table 142)."""

    NOT_SUPPORTED = 0b00
    IMPLICIT = 0b01
    EXPLICIT = 0b10
    BOTH = 0b11


class VersionDescriptor(IntEnum):
    """Version descriptor values claimed in standard INQUIRY (SPC-4 table 144, subset)."""

    SAM_5 = 0x00A0
    SPC_4 = 0x0460
    SBC_3 = 0x04C0
    ISCSI = 0x0960
