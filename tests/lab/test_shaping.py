"""tbf shaping on a lab link: the qdisc is on both ends with the configured rate, and a bulk transfer
over the link passes through it and is throttled by it (tc's counters; no timing is asserted)."""

from __future__ import annotations

import threading
from pathlib import Path

from sanpath.lab import Lab
from tests.helpers.lab import running_lab

BULK = 4 * 1024 * 1024


def tbf(lab: Lab, link: str, end: str) -> dict[str, object]:
    found = [q for q in lab.qdiscs(link)[end] if q["kind"] == "tbf"]
    assert len(found) == 1, lab.qdiscs(link)
    return found[0]


def bulk_transfer(lab: Lab, address: str, port: int = 5001) -> int:
    """Send BULK bytes from the host namespace to a listener in the array namespace; bytes received."""
    received = 0
    with lab.socket_in("array") as listener:
        listener.bind((address, port))
        listener.listen(1)
        listener.settimeout(20)

        def sink() -> None:
            nonlocal received
            conn, _ = listener.accept()
            with conn:
                while chunk := conn.recv(1 << 16):
                    received += len(chunk)

        t = threading.Thread(target=sink)
        t.start()
        with lab.socket_in("host") as s:
            s.settimeout(20)
            s.connect((address, port))
            s.sendall(b"\xa5" * BULK)
        t.join(30)
    return received


def test_tbf_on_both_ends_limits_a_bulk_transfer(tmp_path: Path) -> None:
    with running_lab(subnets=1, controllers=1, state_dir=str(tmp_path)) as lab:
        lab.shape("host-s1", "100mbit")
        assert lab.shaped == {"host-s1": {"rate": "100mbit", "burst": str(32 * 1024), "latency": "20ms"}}
        for end in ("nic", "port"):
            opts = tbf(lab, "host-s1", end)["options"]
            assert isinstance(opts, dict) and opts["rate"] == 100_000_000 // 8  # tc -j reports bytes/s

        assert bulk_transfer(lab, lab.topology.controller_address("A", 1)) == BULK
        sent = tbf(lab, "host-s1", "nic")
        # the data crossed the host's shaped egress, and the bucket ran dry along the way
        assert isinstance(sent["bytes"], int) and sent["bytes"] >= BULK
        assert isinstance(sent["overlimits"], int) and sent["overlimits"] > 0
        # the reverse direction (ACKs) crossed the switch port's tbf
        back = tbf(lab, "host-s1", "port")
        assert isinstance(back["packets"], int) and back["packets"] > 0

        lab.unshape("host-s1")
        assert not any(q["kind"] == "tbf" for end in ("nic", "port") for q in lab.qdiscs("host-s1")[end])
        assert lab.shaped == {}


def test_up_with_shape_shapes_every_storage_link_but_not_management(tmp_path: Path) -> None:
    with running_lab(subnets=2, state_dir=str(tmp_path), shape="1gbit") as lab:
        for link in lab.topology.storage_links():
            for end in ("nic", "port"):
                opts = tbf(lab, link.name, end)["options"]
                assert isinstance(opts, dict) and opts["rate"] == 125_000_000
        assert not any(q["kind"] == "tbf" for q in lab.qdiscs("host-mgmt")["nic"])
