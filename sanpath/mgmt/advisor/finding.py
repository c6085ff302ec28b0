"""What the advisor says: a finding (rule id, severity, the guide's place that states the rule, the
evidence seen, the fix) and the guide's sections the rules cite. Findings are data: the CLI prints them as
text or JSON, the API returns them, and an error-level finding also becomes a message."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any


class Severity(IntEnum):
    """Ordered, so that the worst of several is ``max``; the value is also the CLI's exit code."""

    OK = 0
    WARNING = 1
    ERROR = 2

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Section:
    """A place in the design guide (Citrix, "Configuring iSCSI Multipathing"): chapter and section title."""

    chapter: int
    title: str

    def __str__(self) -> str:
        return f'chapter {self.chapter}, "{self.title}"'

    def to_json(self) -> dict[str, Any]:
        return {"chapter": self.chapter, "section": self.title}


REDUNDANCY = Section(1, "Creating Redundancy for Storage Traffic")
STORAGE_TRAFFIC = Section(1, "Multipathing iSCSI Storage Traffic")
ACTIVE_LINKS = Section(1, "Establishing Multiple Active Links to a LUN")
HANDLER_SUPPORT = Section(2, "Multipath Handler Support")
PHYSICAL = Section(2, "Correct Physical and Subnet Configuration")
CONFIGURING = Section(2, "Configuring iSCSI Software Initiator Multipathing")
RDAC = Section(2, "Enabling MPP RDAC Handler Support for LSI Arrays")
CREATING_SR = Section(3, "Creating the Storage Repository after Enabling Multipathing")


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule broken (or, at OK, a note): ``subject`` names what it is about (a host, NIC, SR, PBD or
    portal), ``evidence`` holds what was seen (addresses, routes, IQNs, INQUIRY strings, counts)."""

    rule: str
    severity: Severity
    section: Section
    subject: str
    message: str
    fix: str
    evidence: dict[str, Any] = field(default_factory=dict)
    host: str = ""  # the host's name, "" for the pool or the array

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "severity": self.severity.label, "guide": self.section.to_json(),
                "host": self.host, "subject": self.subject, "message": self.message, "evidence": self.evidence,
                "fix": self.fix}
