"""links: the link watch sees carrier loss, admin down, address removal and recovery over rtnetlink.

The table's rules are tested with hand-made netlink messages (no socket); the current namespace is read as
any user. The rest needs root and iproute2 (skips without them, fails under CI=true): two namespaces this
module makes, spl-h-PID (the host, NICs s1 and s2) and spl-s-PID (the switch side, p1 and p2), joined by
two veth pairs with 198.18.71.0/24 and 198.18.72.0/24 addresses, deleted afterwards. The watch runs in
this process on a netlink socket opened inside the host namespace. No traffic is sent.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import struct
from collections.abc import AsyncIterator, Iterator
from typing import cast

import pytest
from pyroute2.netlink import NLM_F_DUMP_INTR, NLM_F_MULTI, NLMSG_DONE
from pyroute2.netlink.rtnl import RTM_DELADDR, RTM_DELLINK, RTM_GETADDR, RTM_GETLINK, RTM_NEWADDR, RTM_NEWLINK
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import IFF_LOWER_UP, IFF_UP, ifinfmsg

from sanpath.aio import within
from sanpath.lab import netns as lab
from sanpath.multipath import links
from sanpath.multipath.links import LinkChanged, LinkTable, LinkWatch
from sanpath.testing.waiting import wait_until
from tests.helpers.gates import require_lab

HANG_GUARD = 30.0  # seconds: only a hung test waits this long
UP = IFF_UP | IFF_LOWER_UP
Event = tuple[str, str, bool, str]


def lost(source: str, dev: str) -> Event:
    return (source, dev, False, f"link {dev} lost carrier (netlink)")


def admin_down(source: str, dev: str) -> Event:
    return (source, dev, False, f"link {dev} is administratively down (netlink)")


def back(source: str, dev: str) -> Event:
    return (source, dev, True, f"link {dev} is up with carrier (netlink)")


# --- the table, from hand-made messages ---------------------------------------------------------------


def link(index: int, name: str, flags: int, *, kind: int = RTM_NEWLINK, family: int = 0, msg_flags: int = 0) -> bytes:
    msg = ifinfmsg()
    msg["header"].update(type=kind, flags=msg_flags)
    msg.update(index=index, flags=flags, family=family, attrs=[("IFLA_IFNAME", name)])
    msg.encode()
    return bytes(msg.data)


def addr(index: int, address: str, *, kind: int = RTM_NEWADDR) -> bytes:
    msg = ifaddrmsg()
    msg["header"]["type"] = kind
    msg.update(index=index, family=socket.AF_INET, prefixlen=24, attrs=[("IFA_LOCAL", address),
                                                                        ("IFA_ADDRESS", address)])
    msg.encode()
    return bytes(msg.data)


def done(msg_flags: int = NLM_F_MULTI) -> bytes:
    return struct.pack("=IHHIIi", 20, NLMSG_DONE, msg_flags, 0, 0, 0)


def synced(*datagrams: bytes, addresses: tuple[bytes, ...] = ()) -> LinkTable:
    """A table that has read a link dump of ``datagrams`` and an address dump of ``addresses``."""
    table = LinkTable()
    table.resync()
    for dump in (datagrams, addresses):
        assert table.request() is not None
        for data in (*dump, done()):
            assert table.feed(data) == []
    assert table.synced and table.request() is None
    return table


def s1_table() -> LinkTable:
    return synced(link(7, "s1", UP), link(8, "s2", UP),
                  addresses=(addr(7, "198.18.1.1"), addr(7, "198.18.1.3"), addr(8, "198.18.2.1")))


def test_requests_are_dumps_one_at_a_time() -> None:
    table = LinkTable()
    table.resync()
    first = table.request()
    assert first is not None and struct.unpack_from("=IHH", first) == (len(first), RTM_GETLINK, 0x301)  # a dump
    assert table.request() is None  # the kernel runs one dump per socket at a time
    table.feed(done())
    second = table.request()
    assert second is not None and struct.unpack_from("=H", second, 4) == (RTM_GETADDR,)
    table.feed(done())
    assert table.synced


def test_watch_is_a_lookup() -> None:
    table = s1_table()
    assert table.watch("198.18.1.1") == "s1"
    assert table.state("198.18.1.1") is True
    assert table.reason("198.18.1.1") == back("198.18.1.1", "s1")[3]
    assert table.state("198.18.2.1") is None and table.reason("198.18.2.1") == ""


def test_unknown_or_malformed_source_is_not_watched(caplog: pytest.LogCaptureFixture) -> None:
    table = s1_table()
    with caplog.at_level(logging.WARNING, logger="sanpath.multipath.links"):
        assert table.watch("198.18.9.9") is None
        assert table.watch("storage-nic-1") is None
    assert table.state("198.18.9.9") is None
    assert "198.18.9.9" in caplog.text and "storage-nic-1" in caplog.text
    table.unwatch("198.18.9.9")  # nothing to undo: no error


def test_carrier_loss_and_recovery_reported_once() -> None:
    table = s1_table()
    table.watch("198.18.1.1")
    assert table.feed(link(7, "s1", IFF_UP)) == [LinkChanged(*lost("198.18.1.1", "s1"))]
    assert table.feed(link(7, "s1", IFF_UP)) == []  # the same state again (operstate, MTU, ...): no news
    assert table.feed(link(7, "s1", 0)) == []  # still down, now for another reason
    assert table.reason("198.18.1.1") == admin_down("198.18.1.1", "s1")[3]
    assert table.feed(link(7, "s1", IFF_UP)) == []  # up without carrier is still down
    assert table.feed(link(7, "s1", UP)) == [LinkChanged(*back("198.18.1.1", "s1"))]
    assert table.feed(link(7, "s1", UP)) == []
    assert table.feed(link(8, "s2", 0)) == []  # not watched


def test_admin_down() -> None:
    table = s1_table()
    table.watch("198.18.1.1")
    assert table.feed(link(7, "s1", 0)) == [
        LinkChanged(*admin_down("198.18.1.1", "s1"))]


def test_sources_on_one_link_and_counted_watches() -> None:
    table = s1_table()
    assert table.watch("198.18.1.1") == table.watch("198.18.1.3") == table.watch("198.18.1.1") == "s1"
    assert {c.source for c in table.feed(link(7, "s1", IFF_UP))} == {"198.18.1.1", "198.18.1.3"}
    table.unwatch("198.18.1.1")
    assert table.state("198.18.1.1") is False  # one watch left
    table.unwatch("198.18.1.1")
    assert table.state("198.18.1.1") is None
    assert [c.source for c in table.feed(link(7, "s1", UP))] == ["198.18.1.3"]


def test_address_removed_and_back() -> None:
    table = s1_table()
    table.watch("198.18.1.3")
    table.watch("198.18.1.1")
    assert table.feed(addr(7, "198.18.1.3", kind=RTM_DELADDR)) == [
        LinkChanged("198.18.1.3", "s1", False, "address 198.18.1.3 was removed from s1 (netlink)")]
    assert table.feed(addr(7, "198.18.1.3")) == [
        LinkChanged(*back("198.18.1.3", "s1"))]


def test_link_removed_but_not_when_it_leaves_a_bridge() -> None:
    table = s1_table()
    table.watch("198.18.1.1")
    assert table.feed(link(7, "s1", UP, kind=RTM_DELLINK, family=socket.AF_BRIDGE)) == []
    assert table.feed(link(7, "s1", UP, kind=RTM_DELLINK)) == [
        LinkChanged("198.18.1.1", "s1", False, "link s1 was removed (netlink)")]


def test_resync_drops_what_the_dump_did_not_show() -> None:
    table = s1_table()
    table.watch("198.18.1.1")
    table.resync()  # as after ENOBUFS: the removal of s1 was among the lost notifications
    table.request()
    assert table.feed(link(8, "s2", UP, msg_flags=NLM_F_MULTI)) == []
    assert table.feed(done()) == [LinkChanged("198.18.1.1", "s1", False, "link s1 was removed (netlink)")]


def test_interrupted_dump_is_asked_again_and_drops_nothing() -> None:
    table = s1_table()
    table.watch("198.18.1.1")
    table.resync()
    table.request()
    assert table.feed(link(8, "s2", UP, msg_flags=NLM_F_MULTI | NLM_F_DUMP_INTR)) == []
    assert table.feed(done(NLM_F_MULTI | NLM_F_DUMP_INTR)) == []  # s1 may have been missed: kept
    again = table.request()
    assert again is not None and struct.unpack_from("=H", again, 4) == (RTM_GETLINK,)
    assert table.feed(link(7, "s1", UP, msg_flags=NLM_F_MULTI)) == []
    assert table.feed(done()) == []
    assert table.state("198.18.1.1") is True


# --- the current namespace ----------------------------------------------------------------------------


async def test_loopback_in_current_namespace() -> None:
    async with LinkWatch(lambda *change: None) as watch:
        assert watch.available
        assert watch.watch("127.0.0.1") == "lo"
        assert watch.state("127.0.0.1") is True
        assert watch.watch("198.18.99.1") is None  # held by no interface here: no error
        assert watch.state("198.18.99.1") is None
    assert not watch.available
    watch.close()  # again: nothing


async def test_no_netlink_fails_soft(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def refused(*args: object) -> socket.socket:
        raise PermissionError(1, "Operation not permitted")

    with caplog.at_level(logging.WARNING, logger="sanpath.multipath.links"), monkeypatch.context() as patch:
        patch.setattr(links.socket, "socket", refused)
        watch = LinkWatch(lambda *change: None)
    assert not watch.available
    assert watch.watch("127.0.0.1") is None and watch.state("127.0.0.1") is None
    assert "Operation not permitted" in caplog.text and "NOP-Out" in caplog.text
    watch.close()


# --- the reader, on a stand-in socket -----------------------------------------------------------------


class FakeNetlink:
    """Stands in for the netlink socket: answers each dump request with an empty dump and, when told to,
    fails one read with ENOBUFS; its fileno is a real socket's, so that the loop can wait on it."""

    def __init__(self) -> None:
        self.wake, self.readable = socket.socketpair()
        self.sent: list[int] = []  # the nlmsg_type of each request
        self.replies: list[bytes] = []
        self.overflow = False

    def setsockopt(self, *args: object) -> None:
        pass

    def bind(self, address: object) -> None:
        pass

    def settimeout(self, timeout: object) -> None:
        pass

    def setblocking(self, flag: bool) -> None:
        pass

    def fileno(self) -> int:
        return self.readable.fileno()

    def send(self, data: bytes) -> int:
        self.sent.append(struct.unpack_from("=H", data, 4)[0])
        self.replies.append(done())
        return len(data)

    def recv(self, size: int) -> bytes:
        if self.overflow:
            self.overflow = False
            self.readable.recv(1)
            raise OSError(errno.ENOBUFS, "No buffer space available")
        if self.replies:
            return self.replies.pop(0)
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")

    def close(self) -> None:
        self.wake.close()
        self.readable.close()


async def test_overflow_with_nothing_queued_reads_again() -> None:
    fake = FakeNetlink()
    watch = LinkWatch(lambda *change: None, sock=cast(socket.socket, fake))
    try:
        assert fake.sent == [RTM_GETLINK, RTM_GETADDR]
        fake.overflow = True
        fake.wake.send(b"x")  # the loop sees the socket readable; its one read fails with ENOBUFS
        await wait_until(lambda: len(fake.sent) == 4, "both dumps asked for again")
        assert fake.sent[2:] == [RTM_GETLINK, RTM_GETADDR]
    finally:
        watch.close()


# --- the lab: two namespaces joined by two veth pairs ---------------------------------------------------

HOST = f"spl-h-{os.getpid()}"
SWITCH = f"spl-s-{os.getpid()}"
S1, S1B, S2 = "198.18.71.1", "198.18.71.3", "198.18.72.1"  # s1's primary and secondary address, s2's


@pytest.fixture(scope="module")
def namespaces() -> Iterator[None]:
    require_lab()
    ledger = lab.Ledger()
    try:
        ledger.add_netns(HOST)
        ledger.add_netns(SWITCH)
        ledger.add_veth("s1", HOST, "p1", SWITCH)
        ledger.add_veth("s2", HOST, "p2", SWITCH)
        for cidr, dev, ns in ((f"{S1}/24", "s1", HOST), (f"{S1B}/24", "s1", HOST), ("198.18.71.2/24", "p1", SWITCH),
                              (f"{S2}/24", "s2", HOST), ("198.18.72.2/24", "p2", SWITCH)):
            lab.add_address(ns, dev, cidr)
        yield
    finally:
        problems = ledger.teardown()
        assert not lab.netns_exists(HOST) and not lab.netns_exists(SWITCH)
        assert not problems, problems


class Watched:
    """A LinkWatch in the host namespace and the changes it reported, in order."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.watch = LinkWatch(lambda *change: self.events.put_nowait(change),
                               sock=lab.socket_in(HOST, socket.AF_NETLINK, socket.SOCK_RAW))
        assert self.watch.available

    async def next(self) -> Event:
        return await within(self.events.get(), HANG_GUARD)


@pytest.fixture
async def host(namespaces: None) -> AsyncIterator[Watched]:
    """Every link up with every address and the usual MTU, and a watch that sees them so."""
    for ns, dev in ((HOST, "s1"), (HOST, "s2"), (SWITCH, "p1"), (SWITCH, "p2")):
        lab.set_link(ns, dev, "up")
    lab.ip(HOST, "link", "set", "dev", "s1", "mtu", "1500")
    lab.ip(HOST, "address", "replace", f"{S1B}/24", "dev", "s1")
    watched = Watched()
    try:
        yield watched
    finally:
        watched.watch.close()


async def barrier(host: Watched) -> None:
    """Pull s2's cable and plug it back, and take s2's two changes as the next events: netlink delivers in
    order, so every message about s1 sent before them has been read by then."""
    assert host.watch.watch(S2) == "s2"
    lab.set_link(SWITCH, "p2", "down")
    assert await host.next() == lost(S2, "s2")
    lab.set_link(SWITCH, "p2", "up")
    assert await host.next() == back(S2, "s2")


async def test_cable_pulled_at_the_switch_is_lost_carrier(host: Watched) -> None:
    assert host.watch.watch(S1) == "s1"
    assert host.watch.state(S1) is True
    lab.set_link(SWITCH, "p1", "down")
    assert await host.next() == lost(S1, "s1")
    assert host.watch.state(S1) is False
    lab.set_link(SWITCH, "p1", "up")
    assert await host.next() == back(S1, "s1")
    assert host.watch.state(S1) is True


async def test_nic_set_down_is_admin_down(host: Watched) -> None:
    host.watch.watch(S1)
    lab.set_link(HOST, "s1", "down")
    assert await host.next() == admin_down(S1, "s1")
    lab.set_link(HOST, "s1", "up")
    assert await host.next() == back(S1, "s1")


async def test_back_up_once_and_only_with_carrier(host: Watched) -> None:
    host.watch.watch(S1)
    lab.set_link(SWITCH, "p1", "down")
    assert await host.next() == lost(S1, "s1")
    lab.set_link(HOST, "s1", "down")  # down already: no news
    lab.set_link(HOST, "s1", "up")  # up, but no carrier yet: still down
    lab.set_link(SWITCH, "p1", "up")
    assert await host.next() == back(S1, "s1")
    await barrier(host)  # and nothing more about s1


async def test_repeated_messages_do_not_repeat_callbacks(host: Watched) -> None:
    host.watch.watch(S1)
    for mtu in ("1400", "1300", "1500"):  # each one an RTM_NEWLINK for s1, up with carrier throughout
        lab.ip(HOST, "link", "set", "dev", "s1", "mtu", mtu)
    await barrier(host)
    lab.set_link(SWITCH, "p1", "down")
    assert await host.next() == lost(S1, "s1")
    for mtu in ("1400", "1500"):  # the same again, down throughout
        lab.ip(HOST, "link", "set", "dev", "s1", "mtu", mtu)
    lab.set_link(SWITCH, "p1", "up")
    assert await host.next() == back(S1, "s1")
    await barrier(host)


async def test_two_sources_on_one_link_and_address_removal(host: Watched) -> None:
    assert host.watch.watch(S1) == host.watch.watch(S1B) == "s1"
    lab.set_link(SWITCH, "p1", "down")
    assert {await host.next(), await host.next()} == {lost(S1, "s1"),
                                                      lost(S1B, "s1")}
    lab.set_link(SWITCH, "p1", "up")
    assert {(await host.next())[:3], (await host.next())[:3]} == {(S1, "s1", True), (S1B, "s1", True)}
    lab.ip(HOST, "address", "del", f"{S1B}/24", "dev", "s1")
    assert await host.next() == (S1B, "s1", False, f"address {S1B} was removed from s1 (netlink)")
    assert host.watch.state(S1) is True
    lab.add_address(HOST, "s1", f"{S1B}/24")
    assert await host.next() == back(S1B, "s1")
    await barrier(host)


async def test_unknown_source_in_the_namespace(host: Watched, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="sanpath.multipath.links"):
        assert host.watch.watch("198.18.71.2") is None  # the switch side's address: not in this namespace
    assert host.watch.state("198.18.71.2") is None
    assert "198.18.71.2" in caplog.text


async def test_lost_notifications_are_read_again(host: Watched, monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """A receive buffer too small for a burst (ENOBUFS): the watch reads both tables again and still
    reports the cable pull, once."""
    host.watch.close()
    monkeypatch.setattr(links, "RCVBUF", 4096)  # the kernel makes it 8 KiB: a handful of RTM_NEWLINKs
    small = Watched()
    try:
        small.watch.watch(S1)
        with caplog.at_level(logging.WARNING, logger="sanpath.multipath.links"):
            for mtu in range(1300, 1330):  # the loop is not reading meanwhile: the buffer overflows
                lab.ip(HOST, "link", "set", "dev", "s1", "mtu", str(mtu))
            lab.set_link(SWITCH, "p1", "down")
            assert await small.next() == lost(S1, "s1")
        assert "overflowed" in caplog.text
        lab.set_link(SWITCH, "p1", "up")
        assert await small.next() == back(S1, "s1")
        await barrier(small)
    finally:
        small.watch.close()
