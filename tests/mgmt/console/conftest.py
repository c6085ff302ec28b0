"""The console's browser tests: Playwright (pinned in pyproject) driving Debian's chromium through
``executable_path`` (never ``playwright install``: nothing is downloaded), against a daemon process
serving the console on loopback and a sanpath array process.

The console reads the same store code as the API, whose suites run on both stores; these tests use a
SQLite store. ``SANPATH_SCREENSHOTS=DIR`` saves the README's screenshots there as the tests pass."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from sanpath.testing.nbdio import VerifiedIo

CHROMIUM = "/usr/bin/chromium"


def require_chromium() -> None:
    if os.access(CHROMIUM, os.X_OK):
        return
    message = f"{CHROMIUM} is missing (Debian package chromium); ./run test installs it"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(autouse=True)
def _dump_tasks_before_timeout() -> Iterator[None]:
    """The suite's async task dump is left out here: Playwright's sync API runs an event loop of its own in
    this thread, beside which pytest-asyncio cannot run one."""
    yield


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Module-scoped, never session-scoped: while Playwright's sync API is open its event loop counts as
    running in this thread, and every async test after it would fail to start its own."""
    require_chromium()
    with sync_playwright() as p:
        # as root chromium refuses to start without --no-sandbox
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"] if os.getuid() == 0 else [])
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    p = context.new_page()
    p.set_default_timeout(30_000)
    yield p
    context.close()


def screenshot(page: Page, name: str) -> None:
    """The README's screenshot of this view, when SANPATH_SCREENSHOTS names a directory."""
    if directory := os.environ.get("SANPATH_SCREENSHOTS"):
        os.makedirs(directory, exist_ok=True)
        page.screenshot(path=str(Path(directory) / f"{name}.png"), full_page=True)


class IoThread:
    """Verified I/O through an NBD export from a thread of its own (the test thread runs the browser)."""

    def __init__(self, socket_path: str, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.io: VerifiedIo = self._call(VerifiedIo.connect(socket_path, name))
        self.loop.call_soon_threadsafe(self.io.start)

    def _call(self, coro: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout=120)

    def stop(self) -> tuple[int, list[str]]:
        """Stop, read back every block written, close: (I/Os done, errors)."""
        try:
            self._call(self.io.stop())
            errors = self.io.errors + self._call(self.io.check())
            return self.io.ios, errors
        finally:
            self._call(self.io.close())
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)


def nbd_socket(pbd: dict[str, Any]) -> str:
    return str(pbd["nbd"]).split("socket=", 1)[1]
