"""The management plane's errors, named and numbered as XenServer's: the SR_BACKEND_FAILURE codes of its
iSCSI SR where one exists, xapi's error names (HANDLE_INVALID, PBD_EXISTS, ...) where not. Every error
says what failed, with its parameters, and what to do; the API returns it as
``{"error": NAME, "code": N, "params": [...], "message": ..., "advice": ...}``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import SanpathError


@dataclass(frozen=True, slots=True)
class Kind:
    name: str
    code: int | None  # SR_BACKEND_FAILURE_<code>, or None for xapi's own errors
    http: int  # the HTTP status the API answers with
    advice: str


_KINDS = [
    Kind("SRInUse", 16, 409, "Use the existing SR (sanpath sr list), or forget it first if it is stale."),
    Kind("SRUnavailable", 47, 503, "Check that the array is up and reachable from this host's storage NICs."),
    Kind("ISCSIDevice", 67, 502, "Check the LUN on the array (is it mapped to this host's IQN?)."),
    Kind("ISCSILogin", 68, 502, "Check the CHAP user and secret, and the array's ACL for this host's IQN."),
    Kind("ISCSIInitiator", 70, 409, "Unplug every PBD of this host (sanpath pbd unplug) before changing its IQN."),
    Kind("ISCSIDiscovery", 83, 502, "Check the target addresses and port, and that the array answers "
         "SendTargets discovery from this host."),
    Kind("ISCSIQueryDaemon", 86, 502, "The data-path process did not answer; see the daemon's log."),
    Kind("ConfigTargetMissing", 95, 400, "Give the array's address: --target ADDR[,ADDR...]."),
    Kind("ConfigTargetIQNMissing", 96, 400, "Pick one of the IQNs listed, or * for an array that returns "
         "several (one IQN per port), and give it with --iqn."),
    Kind("ConfigISCSIIQNMissing", 97, 409, "Give this host an IQN: sanpath host set-iqn IQN."),
    Kind("ConfigSCSIid", 107, 400, "Pick one of the LUNs listed and give its SCSIid with --scsi-id."),
    Kind("DNSError", 140, 400, "Give the target as an IP address, or a name this host can resolve."),
    Kind("ISCSITarget", 141, 502, "No portal of the target could be logged in to; check the array, the "
         "cabling and each storage NIC's subnet (sanpath pif list)."),
    Kind("ISCSIPort", 142, 400, "Give a port from 1 to 65535 (iSCSI's is 3260)."),
    Kind("MultipathGenericFailure", 431, 502, "See the PBD's other-config and the daemon's messages."),
    Kind("HANDLE_INVALID", None, 404, "List what exists with the matching list command."),
    Kind("PBD_EXISTS", None, 409, "A PBD for that SR on that host exists already; plug it instead."),
    Kind("PBD_IN_USE", None, 409, "Stop the NBD clients of the SR's export first, or give --force."),
    Kind("SR_HAS_PLUGGED_PBD", None, 409, "Unplug every PBD of the SR first (sanpath pbd unplug)."),
    Kind("IQN_IN_USE", None, 409, "Give every host, and every target, a name of its own."),
    Kind("POOL_NOT_INITIALISED", None, 409, "Create the pool first: sanpath pool create --key-file FILE."),
    Kind("POOL_KEY_INVALID", None, 400, "Give the pool key file that sanpath pool create wrote (--pool-key)."),
    Kind("VALUE_INVALID", None, 400, "Correct the value as the message says."),
    Kind("HOST_DAEMON_RUNNING", None, 409, "Stop the other daemon first; several daemons on one machine "
         "need names (--name) and runtime directories (SANPATH_RUN_DIR) of their own."),
    Kind("HOST_OFFLINE", None, 503, "Start the host's daemon (sanpath host serve) and try again."),
    Kind("TIMEOUT", None, 504, "The host did not report in time; see sanpath pbd list and the daemon's log."),
    Kind("UNAUTHORIZED", None, 401, "Send the API token: Authorization: Bearer TOKEN."),
    Kind("HOST_DISABLED", None, 409, "The host is in maintenance mode: sanpath host maintenance exit --host NAME, "
         "then plug."),
    Kind("HOST_NOT_IN_MAINTENANCE_MODE", None, 409, "Put the host in maintenance mode first: sanpath host "
         "maintenance enter --host NAME (or change every host at once: sanpath pool set-multipathing)."),
    Kind("CANNOT_EVACUATE_HOST", None, 409, "Disconnect the NBD clients of the host's exports, or give --force to "
         "drain and close them, or a longer --timeout."),
    Kind("MULTIPATH_CHANGE_PENDING", None, 409, "Run sanpath host set-multipathing again for this host: it finishes "
         "the change and replugs the PBDs it unplugged."),
    Kind("PBD_REPLUG_FAILED", None, 502, "See each PBD's error (sanpath pbd list --host NAME), fix the cause, then "
         "sanpath pbd plug UUID; the host stays in maintenance mode meanwhile."),
    Kind("MULTIPATH_NOT_ENABLED_ON_ALL_HOSTS", None, 409, "Make multipathing the same on every host first: "
         "sanpath pool set-multipathing on."),
    Kind("STORE_UNREACHABLE", None, 503, "Check the pool store (the PostgreSQL server, or the SQLite file); I/O "
         "goes on meanwhile, and the API answers again once the store is back."),
]
KINDS: dict[str, Kind] = {k.name: k for k in _KINDS}


class XenError(SanpathError):
    """A management-plane error with XenServer's name and code."""

    def __init__(self, name: str, message: str, *params: Any, advice: str | None = None) -> None:
        kind = KINDS[name]
        self.name = name
        self.kind = kind
        self.params = [str(p) for p in params]
        self.message = message
        self.advice = advice or kind.advice
        super().__init__(f"{name}{f' ({kind.code})' if kind.code else ''}: {message}")

    @property
    def code(self) -> int | None:
        return self.kind.code

    def to_json(self) -> dict[str, Any]:
        return {"error": self.name, "code": self.code, "params": self.params, "message": self.message,
                "advice": self.advice}

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> XenError:
        name = body.get("error")
        if not isinstance(name, str) or name not in KINDS:
            name = "MultipathGenericFailure"
        return cls(name, str(body.get("message", "")), *body.get("params") or [], advice=body.get("advice"))
