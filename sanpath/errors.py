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
