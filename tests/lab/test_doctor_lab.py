"""``sanpath doctor --target`` (no pool) in the namespace lab's host namespace, against the sanpath array in
the array namespace: the seed's clean topology yields no warning or error (exit 0); each scenario then
breaks one rule, and the doctor yields exactly that rule's findings with the evidence the kernel and the
array gave (the pool rules are checked on a live pool in tests/mgmt/test_doctor.py):

- both storage NICs on one subnet (host-s2 given a second address on subnet 1): separate-subnets;
- subnet 2's portals reachable only through the management NIC (host-s2 without its address, a route to
  198.18.2.0/24 via the management station): management-interface, one per portal;
- the multi-IQN array with one IQN chosen: wildcard;
- the rdac-profile array under dmp: handler.

Needs root and iproute2 (fails under CI=true without them)."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from sanpath.lab import Lab
from sanpath.target.spawn import serve_target
from tests.helpers.gates import require_lab
from tests.helpers.lab import running_lab

IQN = "iqn.2026-12.org.sanpath.test:lab-doctor"
INITIATOR = "iqn.2026-12.com.example:doctor"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    require_lab()
    with running_lab(subnets=2, controllers=2, state_dir=str(tmp_path_factory.mktemp("lab"))) as lab:
        yield lab


def portals(lab: Lab) -> list[str]:
    return [p for _, p in lab.topology.portals()]


@contextlib.contextmanager
def array(lab: Lab, *args: str) -> Iterator[Any]:
    # each portal names its controller, so that the array's controllers A and B are the lab's: each with a
    # NIC on both subnets (left to itself, the array would put the first half of the portals on A)
    named = [f"{c}={p}" for c, p in lab.topology.portals()]
    with serve_target("--iqn", IQN, *args, *(a for p in named for a in ("--portal", p)), "--lun",
                      "mem:32MiB", prefix=lab.prefix("array")) as t:
        yield t


def doctor(lab: Lab, target: str, iqn: str) -> tuple[int, dict[str, Any]]:
    r = lab.exec_in("host", [sys.executable, "-m", "sanpath", "doctor", "--target", target, "--iqn", iqn,
                             "--management", "host-mgmt", "--initiator-iqn", INITIATOR, "--format", "json"],
                    check=False, timeout=120)
    assert r.returncode in (0, 1, 2), r.stderr
    return r.returncode, json.loads(r.stdout)


def problems(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in report["findings"] if f["severity"] != "ok"]


def test_the_clean_topology_then_one_broken_rule_at_a_time(lab: Lab) -> None:
    a1 = lab.topology.controller_address("A", 1)
    with array(lab):
        rc, clean = doctor(lab, a1, IQN)
        assert rc == 0 and problems(clean) == [], clean
        [note] = clean["findings"]
        assert note["rule"] == "portal-mode" and len(note["evidence"]["iqns"][IQN]) == 4

        lab.exec_in("host", ["ip", "address", "add", "198.18.1.11/24", "dev", "host-s2"])
        try:
            rc, report = doctor(lab, a1, IQN)
        finally:
            lab.exec_in("host", ["ip", "address", "del", "198.18.1.11/24", "dev", "host-s2"])
        [f] = problems(report)
        assert rc == 2 and f["rule"] == "separate-subnets", report
        assert f["evidence"] == {"subnet": "198.18.1.0/24", "nics": {"host-s1": ["198.18.1.10/24"],
                                                                     "host-s2": ["198.18.2.10/24", "198.18.1.11/24"]}}

        station = lab.topology.station_address().split("/")[0]
        lab.exec_in("host", ["ip", "address", "flush", "dev", "host-s2"])
        lab.exec_in("host", ["ip", "route", "add", "198.18.2.0/24", "via", station, "dev", "host-mgmt"])
        try:
            rc, report = doctor(lab, a1, IQN)
        finally:
            lab.exec_in("host", ["ip", "route", "del", "198.18.2.0/24"], check=False)
            lab.exec_in("host", ["ip", "address", "add", lab.topology.link("host-s2").address, "dev", "host-s2"])
        found = problems(report)
        assert rc == 2 and {f["rule"] for f in found} == {"management-interface"}, report
        assert sorted(f["evidence"]["portal"] for f in found) == [lab.topology.controller_address(c, 2) for c in "AB"]
        assert all(f["evidence"]["device"] == "host-mgmt" and f["evidence"]["gateway"] == station for f in found)

        rc, again = doctor(lab, a1, IQN)  # everything put back: clean again
        assert rc == 0 and problems(again) == [], again


def test_a_multi_iqn_array_with_one_iqn_chosen(lab: Lab) -> None:
    every = ",".join(p.split(":")[0] for p in portals(lab))
    with array(lab, "--profile", "multi-iqn") as t:
        one = sorted(t.iqns)[0]
        rc, report = doctor(lab, every, one)
        assert len(problems(report)) == 1, [(x["rule"], x["message"]) for x in problems(report)]
        [f] = problems(report)
        assert rc == 2 and f["rule"] == "wildcard" and f["evidence"]["chosen"] == one
        assert len(f["evidence"]["reached"]) == 1 and len(f["evidence"]["portals"]) == 4
        rc, report = doctor(lab, every, "*")
        assert rc == 0 and problems(report) == [], report


def test_the_rdac_array_under_dmp(lab: Lab) -> None:
    with array(lab, "--profile", "rdac"):
        rc, report = doctor(lab, lab.topology.controller_address("A", 1), IQN)
        [f] = problems(report)
        assert rc == 1 and f["rule"] == "handler" and f["evidence"]["vendor"].strip() == "LSI", report
        assert f["guide"] == {"chapter": 2, "section": "Enabling MPP RDAC Handler Support for LSI Arrays"}
