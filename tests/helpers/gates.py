"""Gates for tests that need something real: a peer program (tgtd, libiscsi's tools, qemu, libnbd),
the namespace lab (root and iproute2) or a throwaway PostgreSQL server.

Each ``require_*`` skips the calling test with the reason when the thing is missing, but under
``CI=true`` it fails the test instead, so that CI can never pass by skipping.
"""

from __future__ import annotations

import os
import shutil

import pytest

from sanpath.testing.postgres import unavailable_reason


def _skip_or_fail(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def require_peer(*commands: str, package: str = "") -> None:
    missing = [c for c in commands if shutil.which(c) is None]
    if not missing:
        return
    hint = f" (Debian package {package})" if package else ""
    _skip_or_fail(f"peer missing: {', '.join(missing)}{hint}; ./run test installs it")


def require_lab() -> None:
    require_peer("ip", "tc", package="iproute2")
    if os.geteuid() != 0:
        _skip_or_fail("the namespace lab needs root (network namespaces, veth, bridges, tc)")


def require_postgres() -> None:
    """Skip the calling test when PostgreSQL cannot run here; fail it instead under ``CI=true``."""
    reason = unavailable_reason()
    if reason is not None:
        _skip_or_fail(reason)
