"""iscsi:// URLs as libiscsi and QEMU write them, and the portal lists of discovery."""

from __future__ import annotations

import pytest

from sanpath.errors import ConfigError
from sanpath.initiator.discovery import parse_portals
from sanpath.initiator.url import IscsiUrl, parse_host_port, parse_url

IQN = "iqn.2026-11.org.sanpath:x"


@pytest.mark.parametrize(("text", "want"), [
    (f"iscsi://127.0.0.1/{IQN}/0", IscsiUrl("127.0.0.1", 3260, IQN, 0)),
    (f"iscsi://127.0.0.1:3300/{IQN}/7", IscsiUrl("127.0.0.1", 3300, IQN, 7)),
    (f"iscsi://[::1]:3300/{IQN}/1", IscsiUrl("::1", 3300, IQN, 1)),
    (f"iscsi://[::1]/{IQN}/1", IscsiUrl("::1", 3260, IQN, 1)),
    (f"iscsi://alice@h/{IQN}/0", IscsiUrl("h", 3260, IQN, 0, "alice", None)),
    (f"iscsi://alice%s3cr%40t@h:1/{IQN}/16383", IscsiUrl("h", 1, IQN, 16383, "alice", "s3cr@t")),
    (f"iscsi://h/{IQN}/0/", IscsiUrl("h", 3260, IQN, 0)),
])
def test_parse(text: str, want: IscsiUrl) -> None:
    got = parse_url(text)
    assert got == want
    assert got.password == want.password  # not part of the repr, still parsed


def test_lun_optional_when_asked() -> None:
    assert parse_url(f"iscsi://h/{IQN}", need_lun=False) == IscsiUrl("h", 3260, IQN, 0)
    assert parse_url(f"iscsi://h/{IQN}/3", need_lun=False).lun == 3
    with pytest.raises(ConfigError, match="expected iscsi://"):
        parse_url(f"iscsi://h/{IQN}")


def test_password_not_in_repr_or_str() -> None:
    u = parse_url(f"iscsi://alice%topsecret-value@h/{IQN}/0")
    assert "topsecret" not in repr(u) and "topsecret" not in str(u)
    assert str(u) == f"iscsi://alice@h:3260/{IQN}/0"


@pytest.mark.parametrize(("text", "match"), [
    ("http://h/iqn/0", "not an iSCSI URL"),
    (f"iscsi://h:port/{IQN}/0", "port must be a number"),
    (f"iscsi://h:70000/{IQN}/0", "out of range"),
    (f"iscsi://[::1/{IQN}/0", "unclosed"),
    (f"iscsi://h/{IQN}/x", "LUN must be a number"),
    (f"iscsi://h/{IQN}/16384", "LUN must be a number"),
    (f"iscsi:///{IQN}/0", "no host"),
    (f"iscsi://h/{IQN}/0/extra", "expected iscsi://"),
])
def test_errors_say_what(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_url(text)


def test_host_port() -> None:
    assert parse_host_port("192.0.2.1") == ("192.0.2.1", 3260)
    assert parse_host_port("192.0.2.1:3261") == ("192.0.2.1", 3261)
    assert parse_host_port("[fe80::1]:3261") == ("fe80::1", 3261)
    assert parse_host_port("fe80::1") == ("fe80::1", 3260)
    with pytest.raises(ConfigError, match="expected ':PORT'"):
        parse_host_port("[::1]x")


def test_portal_lists() -> None:
    assert parse_portals("a,b:3300, [::1]:1 ,") == [("a", 3260), ("b", 3300), ("::1", 1)]
    with pytest.raises(ValueError, match="no portal"):
        parse_portals(" , ")
