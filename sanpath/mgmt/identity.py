"""The host's iSCSI name: generated on first start as XenServer does (``iqn.YYYY-MM.<reversed domain, or
com.example>:<8 hex>``), and checked against RFC 7143 §4.2.7 before it is set."""

from __future__ import annotations

import re
import secrets
import socket
import time

from .errors import XenError

_IQN = re.compile(r"^iqn\.\d{4}-(0[1-9]|1[0-2])\.[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*"
                  r"(:[^\s]+)?$")
_EUI = re.compile(r"^eui\.[0-9A-F]{16}$")
_NAA = re.compile(r"^naa\.([0-9A-F]{16}|[0-9A-F]{32})$")


def generate_iqn(fqdn: str | None = None, when: float | None = None) -> str:
    name = fqdn if fqdn is not None else socket.getfqdn()
    labels = [p for p in name.lower().split(".") if p]
    domain = ".".join(reversed(labels[1:])) if len(labels) > 2 else ""
    if not domain or not _IQN.match(f"iqn.2000-01.{domain}"):
        domain = "com.example"
    return f"iqn.{time.strftime('%Y-%m', time.gmtime(when))}.{domain}:{secrets.token_hex(4)}"


def check_iqn(name: str) -> str:
    """The name, if it is a valid iSCSI name (iqn., eui. or naa. format, at most 223 bytes)."""
    if len(name.encode()) > 223 or not (_IQN.match(name) or _EUI.match(name) or _NAA.match(name)):
        raise XenError("VALUE_INVALID", f"{name!r} is not an iSCSI name (RFC 7143 §4.2.7): write "
                       "iqn.YYYY-MM.reversed.domain[:unique], lower case, at most 223 bytes", name)
    return name
