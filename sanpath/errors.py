"""The error tree: one root, and a split between our own misuse and a peer breaking the rules."""

from __future__ import annotations


class SanpathError(Exception):
    """Root of every error sanpath raises on purpose."""


class LocalProtocolError(SanpathError):
    """We were asked to do something the protocol forbids (a bug in the caller, not the peer)."""


class RemoteProtocolError(SanpathError):
    """The peer sent something the protocol forbids; the message cites the rule it broke."""


class ConfigError(SanpathError):
    """A configuration value is wrong; the message names the key and what would be accepted."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


class AuthenticationError(SanpathError):
    """Login authentication failed (RFC 7143 §12.1): the message says which side refused whom and why.

    A target answers it with Login status 0x0201 (authentication failure); an initiator closes the
    connection. The message names the CHAP user and what to check, and never contains a secret.
    """


class IscsiError(SanpathError):
    """An iSCSI operation failed; ``portal`` says where."""

    def __init__(self, message: str, *, portal: str = "") -> None:
        super().__init__(f"{portal}: {message}" if portal else message)
        self.portal = portal


class LoginError(IscsiError):
    """The target refused the login (RFC 7143 §11.13.5 status class and detail)."""

    def __init__(self, message: str, *, portal: str = "", status: int = 0) -> None:
        super().__init__(message, portal=portal)
        self.status = status


class ConnectionLost(IscsiError):
    """The connection carrying a command went away; the command may be retried on another path."""

    def __init__(self, message: str, *, portal: str = "", cause: str = "") -> None:
        super().__init__(message, portal=portal)
        self.cause = cause


class CommandTimeout(IscsiError):
    """A command did not complete in time; it was aborted (ABORT TASK, then LUN RESET, then the
    connection was dropped)."""


class ScsiCommandError(IscsiError):
    """A SCSI command completed with a status other than GOOD."""

    def __init__(self, message: str, *, portal: str = "", status: int = 0, sense: bytes = b"") -> None:
        super().__init__(message, portal=portal)
        self.status = status
        self.sense = sense


class TaskAborted(IscsiError):
    """A command was aborted by a task management function (ours or another initiator's); it did not
    execute, or it executed and may be reissued (the multipath layer decides)."""


class NoPathError(IscsiError):
    """No path to the LUN can carry I/O, and no_path_retry says not to wait (longer)."""
