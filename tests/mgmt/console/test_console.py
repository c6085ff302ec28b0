"""The console in a browser, against a multi-iqn sanpath array with two portals on loopback and a daemon
process serving the console (the tests run in order, on one pool):

- the New SR wizard: both IQN entries and the wildcard, the LUN, Finish, "2 of 2 paths active";
- a portal black-holed while the SR page is open under verified I/O: the count drops and turns red, an
  alert appears, and the chart shows the I/O leaving the dead path, all without a reload; then the
  portal is restored and the count recovers;
- the advisor's view: a black-holed path is a path-count finding with its fix, gone once it is back;
- Properties -> Multipathing: the checkbox is disabled outside maintenance mode with the reason; in
  maintenance mode the change shows its unplug/set/replug steps and the PBD replugged.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from sanpath.target import control as target_control
from sanpath.target.spawn import RunningTarget, serve_target
from sanpath.testing.daemon import Daemon, serve_daemon

from .conftest import IoThread, nbd_socket, screenshot

BASE_IQN = "iqn.2026-12.org.sanpath.test:console"
RED = "rgb(198, 40, 40)"  # console.css --red


@dataclass
class Pool:
    array: RunningTarget
    daemon: Daemon

    @property
    def url(self) -> str:
        return self.daemon.console.rstrip("/")

    def sr(self) -> dict[str, Any]:
        [sr] = self.daemon.call("GET", "/srs")
        return dict(self.daemon.call("GET", f"/srs/{sr['uuid']}"))


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    tmp = tmp_path_factory.mktemp("console")
    with serve_target("--iqn", BASE_IQN, "--profile", "multi-iqn", "--portal", "127.0.0.1:0",
                      "--portal", "127.0.0.2:0", "--lun", f"{tmp / 'lun0.img'}:64MiB") as array, \
            serve_daemon("--console", "127.0.0.1:0", "--name", "host1") as daemon:
        assert daemon.console.startswith("http://127.0.0.1:"), daemon.console
        yield Pool(array, daemon)


def wait_for(check: Any, what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_new_sr_wizard_on_a_multi_iqn_array(pool: Pool, page: Page) -> None:
    assert len(pool.array.iqns) == 2  # one IQN per portal
    page.goto(f"{pool.url}/new-sr")
    page.fill("#sr-name", "console SR")
    page.fill("#sr-target", ",".join(pool.array.portals))
    page.click("#discover-iqns")
    options = page.locator("#target-iqn option")
    expect(options).to_have_count(3)
    texts = options.all_inner_texts()
    for iqn, portal in zip(pool.array.iqns, pool.array.portals, strict=True):
        assert f"{iqn} ({portal})" in texts, texts
    assert texts[2].startswith("* ("), texts
    expect(page.locator("#wildcard-help")).to_contain_text("several IQNs")
    page.select_option("#target-iqn", "*")
    page.click("#discover-luns")
    expect(page.locator("#lun-table")).to_contain_text("SANPATH")
    scsi_id = page.locator("#lun-table input[name=SCSIid]").get_attribute("value")
    assert scsi_id and re.fullmatch(r"[0-9a-f]+", scsi_id)
    screenshot(page, "console-new-sr")
    page.click("#finish")
    job = page.locator(".job")
    expect(job.locator(".state")).to_have_text("done", timeout=60_000)
    expect(job).to_contain_text("host host1: 2 of 2 paths active (2 iSCSI sessions)")
    page.click(".job a.go")
    expect(page.locator("h1")).to_have_text("SR console SR")
    cell = page.locator("#sr-hosts tr[data-host=host1] td.paths")
    expect(cell).to_have_text("2 of 2 paths active (2 iSCSI sessions)")
    assert pool.sr()["SCSIid"] == scsi_id
    expect(page.locator("#tree")).to_contain_text("console SR")


def test_a_black_holed_portal_seen_live(pool: Pool, page: Page) -> None:
    sr = pool.sr()
    [pbd] = sr["pbds"]
    io = IoThread(nbd_socket(pbd), sr["SCSIid"])
    errors: list[str] = []
    try:
        page.goto(f"{pool.url}/srs/{sr['uuid']}")
        page.evaluate("window.notReloaded = true")
        cell = page.locator("#sr-hosts tr[data-host=host1] td.paths")
        expect(cell).to_have_text("2 of 2 paths active (2 iSCSI sessions)")
        names = sorted(p["name"] for p in pbd_paths(pool))
        victim = next(n for n in names if n.startswith(pool.array.portals[1]))
        survivor = next(n for n in names if n != victim)
        wait_for(lambda: all(carried(page, n) for n in names), "round robin to carry I/O on both paths")
        fault = target_control.call(pool.array.control, {"op": "fault", "kind": "blackhole",
                                                         "portal": pool.array.portals[1]})["fault"]
        expect(cell).to_have_text("1 of 2 paths active (1 iSCSI sessions)")
        expect(cell).to_have_css("color", RED)
        expect(page.locator("#alerts-banner")).to_contain_text("MULTIPATH_PERIODIC_ALERT")
        expect(page.locator("#alerts-banner")).to_contain_text("1 of 2 paths active")
        expect(page.locator(f"#sr-paths tr[data-path='{victim}'] td.state")).not_to_have_text("active")
        expect(page.locator("#tree")).to_contain_text("degraded")
        expect(page.locator("#repair")).to_be_visible()
        # the chart: the dead path's line falls to 0 while the survivor carries the I/O
        wait_for(lambda: last_samples(page, victim, 3) == [0, 0, 0] and all(
            v > 0 for v in last_samples(page, survivor, 3)), "the chart to show the failover")
        screenshot(page, "console-sr-failover")
        target_control.call(pool.array.control, {"op": "restore", "id": fault["id"]})
        expect(cell).to_have_text("2 of 2 paths active (2 iSCSI sessions)", timeout=60_000)
        expect(page.locator("#alerts-banner")).to_contain_text("recovered")
        wait_for(lambda: carried(page, victim, recent=3), "the chart to show the failback")
        assert page.evaluate("window.notReloaded") is True
    finally:
        ios, errors = io.stop()
    assert ios > 0 and errors == [], errors


def test_the_advisor_view_shows_the_pool_findings(pool: Pool, page: Page) -> None:
    def path_count_findings() -> list[dict[str, Any]]:
        report = pool.daemon.call("GET", "/doctor")
        return [f for f in report["findings"] if f["rule"] == "path-count"]

    assert path_count_findings() == []
    fault = target_control.call(pool.array.control, {"op": "fault", "kind": "blackhole",
                                                     "portal": pool.array.portals[1]})["fault"]
    try:
        [f] = wait_for(path_count_findings, "the advisor to see the black-holed path")
        page.goto(f"{pool.url}/doctor")
        finding = page.locator(".finding", has_text=f"[{f['rule']}] {f['subject']}")
        expect(finding).to_have_count(1)
        expect(finding).to_contain_text(f["fix"])
        expect(finding).to_contain_text(f"chapter {f['guide']['chapter']}")
    finally:
        target_control.call(pool.array.control, {"op": "restore", "id": fault["id"]})
    wait_for(lambda: path_count_findings() == [], "the path to come back", timeout=60)
    page.reload()
    expect(page.locator(".finding", has_text="[path-count]")).to_have_count(0)


def test_multipathing_is_changed_in_maintenance_mode_only(pool: Pool, page: Page) -> None:
    host = pool.daemon.uuid
    page.goto(f"{pool.url}/hosts/{host}/multipathing")
    checkbox = page.locator("#mp-enabled")
    expect(checkbox).to_be_disabled()
    expect(checkbox).to_be_checked()
    expect(page.locator("#mp-reason")).to_contain_text("must be in maintenance mode")
    expect(page.locator("#mp-apply")).to_be_disabled()
    page.click("#maintenance-enter")
    expect(page.locator(".job", has_text="Enter maintenance mode").locator(".state")).to_have_text("done")
    expect(checkbox).to_be_enabled()  # the form follows the host's row, through the event stream
    expect(page.locator("#mp-reason")).to_have_count(0)
    checkbox.uncheck()
    page.click("#mp-apply")
    job = page.locator(".job", has_text="Multipathing on host host1")
    expect(job.locator(".state")).to_have_text("done", timeout=60_000)
    [pbd] = pool.sr()["pbds"]
    steps = job.locator("ol.steps li").all_inner_texts()
    assert steps[0] == f"host host1: unplugged PBD {pbd['uuid']}", steps
    assert steps[1] == "host host1: multipathing set off (handler dmp)", steps
    assert steps[2].startswith(f"host host1: replugged PBD {pbd['uuid']}: attached"), steps
    assert pbd["currently_attached"] and pool.daemon.call("GET", f"/hosts/{host}")["multipathing"] is False
    screenshot(page, "console-multipathing")
    page.click("#maintenance-exit")
    expect(page.locator("#mp-maintenance")).to_have_text("off")
    expect(checkbox).to_be_disabled()
    page.goto(f"{pool.url}/hosts/{host}")
    expect(page.locator("#host-multipathing")).to_have_text("off")
    screenshot(page, "console-host-general")


def test_alerts_are_acknowledged_into_the_past(pool: Pool, page: Page) -> None:
    page.goto(f"{pool.url}/alerts")
    current = page.locator("#alerts-current tr.alert")
    before = current.count()
    assert before >= 2  # the degraded and the recovered alert of the black-holed portal
    current.first.locator("button.ack").click()
    expect(current).to_have_count(before - 1)
    expect(page.locator("#alerts-past")).to_contain_text("MULTIPATH_PERIODIC_ALERT")
    acknowledged = [m for m in pool.daemon.call("GET", "/messages") if m["acknowledged"]]
    assert len(acknowledged) == 1


def test_a_post_from_another_site_is_refused(pool: Pool) -> None:
    r = httpx.post(f"{pool.url}/hosts/{pool.daemon.uuid}/maintenance", data={"mode": "enter"})
    assert r.status_code == 403 and "HX-Request" in r.json()["message"]
    assert pool.daemon.call("GET", f"/hosts/{pool.daemon.uuid}")["maintenance_mode"] is False


def pbd_paths(pool: Pool) -> list[dict[str, Any]]:
    """The SR's paths on the host, as the console's chart reads them."""
    return list(httpx.get(f"{pool.url}/srs/{pool.sr()['uuid']}/throughput").json()["paths"])


def samples(page: Page, name: str) -> list[float]:
    return list(page.evaluate("(n) => (window.sanpathChart.mbps[n] || []).map((v) => v || 0)", name))


def last_samples(page: Page, name: str, n: int) -> list[float]:
    values = samples(page, name)
    return values[-n:] if len(values) >= n else []


def carried(page: Page, name: str, recent: int = 0) -> bool:
    """Whether the chart shows I/O on the path (in its last ``recent`` samples, or any)."""
    values = samples(page, name)
    return any(v > 0 for v in (values[-recent:] if recent else values))
