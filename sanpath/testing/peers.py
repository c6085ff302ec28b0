"""Finding the real peers the tests run against (tgtd, libiscsi's tools, qemu, libnbd).

A test that needs a peer calls ``require_peer``: it skips with the reason when the peer is missing,
but under ``CI=true`` it fails, so that CI can never pass by skipping.
"""

from __future__ import annotations

import os
import shutil

import pytest


def require_peer(*commands: str, package: str = "") -> None:
    missing = [c for c in commands if shutil.which(c) is None]
    if not missing:
        return
    hint = f" (Debian package {package})" if package else ""
    message = f"peer missing: {', '.join(missing)}{hint}; ./run test installs it"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)
