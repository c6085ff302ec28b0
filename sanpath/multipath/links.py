"""Link watch: the data path hears from rtnetlink the moment a storage NIC its sessions leave through loses
carrier or is set administratively down, so that the paths bound to it are failed at once instead of after
a NOP-Out timeout (issue 21). A path is bound by its source address (``PathSpec.source``); that address
names the interface to watch.

How it reads netlink. One raw ``NETLINK_ROUTE`` socket from the standard library, bound to the link and
the IPv4 and IPv6 address multicast groups (RTMGRP_LINK, RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR), made
non-blocking and read with ``loop.add_reader``; pyroute2's message classes encode the two dump requests
and decode everything that arrives. pyroute2's own sockets were not used: the synchronous ``IPRoute``
runs an asyncio loop of its own and cannot be driven from a thread whose loop is running, and
``AsyncIPRoute``'s socket is unusable once its receive buffer has overflowed (ENOBUFS; its documentation
says to close it and make a new one). Here an overflow only means that notifications were lost, and the
cure is to read both tables again on the same socket.

What it keeps. ``LinkTable`` (sans-IO: datagrams in, changes out) holds a copy of the namespace's links
(ifindex -> name and flags) and addresses (address -> ifindexes), read by one link dump and one address
dump at start and kept current by the notifications. Replies and notifications are applied alike and in
the order the socket delivers them, which is the order the kernel made them, so the copy is never older
than the last datagram read; ``watch`` is a lookup with no I/O. A re-read marks what it sees and, when
its dump ends, drops what it did not see (unless the kernel flagged the dump NLM_F_DUMP_INTR: then that
dump is made again).

State. A watched source is up while its address is on an interface that is administratively up (IFF_UP)
and has carrier (IFF_LOWER_UP, which the kernel clears whenever IFF_UP is clear); otherwise it is down,
with a reason naming the interface and ending in "(netlink)". Only transitions are reported, once each:
the kernel sends RTM_NEWLINK for many things (MTU, operstate, statistics) that do not change the answer.

The start reads both dumps before the constructor returns, blocking the loop for as long as the kernel
takes to write them (the kernel fills dump replies inside the send and receive calls themselves; nothing
waits on another party; bounded by ``DUMP_TIMEOUT``). Failing soft: a socket that cannot be opened, bound
or read leaves a LinkWatch that watches nothing and says so once in the log; liveness then rests on the
path checker (NOP-Out) alone.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from pyroute2.netlink import NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR
from pyroute2.netlink.rtnl import (
    RTM_DELADDR,
    RTM_DELLINK,
    RTM_GETADDR,
    RTM_GETLINK,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTMGRP_IPV4_IFADDR,
    RTMGRP_IPV6_IFADDR,
    RTMGRP_LINK,
)
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import IFF_LOWER_UP, IFF_UP, ifinfmsg
from pyroute2.netlink.rtnl.marshal import MarshalRtnl

log = logging.getLogger(__name__)

GROUPS = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR
SO_RCVBUFFORCE = 33  # <asm-generic/socket.h>: SO_RCVBUF past net.core.rmem_max (CAP_NET_ADMIN); not in socket
RCVBUF = 1 << 20  # room for a burst of notifications (a lab or a bond flapping many links at once)
DUMP_TIMEOUT = 5.0  # seconds the start may wait for the kernel's dump replies
_RECV_SIZE = 1 << 16  # a dump datagram is at most 32 KiB, a notification a few hundred bytes
_BATCH = 64  # datagrams read per wakeup: a notification storm cannot keep the loop from other work
_DUMP_CLASS = {RTM_GETLINK: ifinfmsg, RTM_GETADDR: ifaddrmsg}

_FALLBACK = "link changes will not fail paths at once, only the path checker (NOP-Out) will"
OnChange = Callable[[str, str, bool, str], None]  # (source, ifname, up, reason)


@dataclass(frozen=True, slots=True)
class LinkChanged:
    """A watched source address became usable (``up``) or unusable, on interface ``ifname``, because of
    ``reason`` ("link s1 lost carrier (netlink)", "link s1 is up with carrier (netlink)")."""

    source: str
    ifname: str
    up: bool
    reason: str


@dataclass(slots=True)
class _Link:
    name: str
    flags: int
    seen: int  # the generation (see LinkTable.resync) of the last message about it


@dataclass(slots=True)
class _Watched:
    count: int  # how many watch() calls it has had, less unwatch() calls
    ifindex: int  # the interface that held the address when last looked at
    ifname: str
    up: bool
    reason: str


class LinkTable:
    """The links and addresses of one network namespace as rtnetlink last described them, and the state
    last reported for each watched source address. No I/O: ``feed`` takes each datagram read from a
    socket bound to ``GROUPS`` and returns the transitions it caused; ``request`` gives the dump request
    to send next, if one is due."""

    def __init__(self) -> None:
        self._marshal = MarshalRtnl()
        self._links: dict[int, _Link] = {}
        self._addresses: dict[str, dict[int, int]] = {}  # address -> {ifindex: generation last seen}
        self._watched: dict[str, _Watched] = {}
        self._generation = 0
        self._pending: list[int] = []  # dumps still to request: RTM_GETLINK, RTM_GETADDR
        self._dumping: int | None = None  # the dump whose replies are arriving
        self._interrupted = False  # the kernel flagged the running dump inconsistent (NLM_F_DUMP_INTR)
        self._again = False  # notifications were lost while a dump ran: read everything again after it
        self._seq = 0

    @property
    def synced(self) -> bool:
        """Both tables have been read and no re-read is running or due."""
        return self._dumping is None and not self._pending

    def resync(self) -> None:
        """Read every link and address again: at start, and when notifications were lost (ENOBUFS)."""
        if self._dumping is not None:
            self._again = True
            return
        self._generation += 1
        self._pending = [RTM_GETLINK, RTM_GETADDR]

    def request(self) -> bytes | None:
        """The next dump request to send, or None (none due, or one is running: the kernel runs one dump
        per socket at a time)."""
        if self._dumping is not None or not self._pending:
            return None
        kind = self._pending.pop(0)
        self._dumping, self._interrupted = kind, False
        self._seq += 1
        msg = _DUMP_CLASS[kind]()
        msg["header"]["type"] = kind
        msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_DUMP
        msg["header"]["sequence_number"] = self._seq
        msg["family"] = socket.AF_UNSPEC
        msg.encode()
        return bytes(msg.data)

    def feed(self, data: bytes) -> list[LinkChanged]:
        """Apply one datagram (dump replies or notifications); the watched sources' transitions."""
        for msg in self._marshal.parse(data):
            header = msg["header"]
            if header["flags"] & NLM_F_DUMP_INTR:
                self._interrupted = True
            kind = header["type"]
            if kind == NLMSG_DONE:  # only ever a reply to our own dump, never a notification
                self._dump_done()
            elif kind == NLMSG_ERROR:
                log.warning("netlink: dump request %s refused: %s", self._dumping, header.get("error"))
                self._dumping = None
            elif kind in (RTM_NEWLINK, RTM_DELLINK) and msg["family"] != socket.AF_UNSPEC:
                continue  # a bridge port's AF_BRIDGE view: its DELLINK means "left the bridge", not "gone"
            elif kind == RTM_NEWLINK:
                self._links[msg["index"]] = _Link(msg.get_attr("IFLA_IFNAME") or f"if{msg['index']}",
                                                  msg["flags"], self._generation)
            elif kind == RTM_DELLINK:
                self._links.pop(msg["index"], None)
            elif kind in (RTM_NEWADDR, RTM_DELADDR):
                address = _address(msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS"))
                if address is None:
                    continue
                if kind == RTM_NEWADDR:
                    self._addresses.setdefault(address, {})[msg["index"]] = self._generation
                else:
                    self._drop_address(address, msg["index"])
        return self._evaluate()

    def watch(self, source: str) -> str | None:
        """Start watching ``source`` (counted: each call wants one ``unwatch``); the interface holding it,
        or None when it is not an IP address or no interface in this namespace holds it."""
        watched = self._find(source)
        if watched is not None:
            watched.count += 1
            return watched.ifname
        address = _address(source)
        if address is None:
            log.warning("netlink: source %r is not an IP address; its paths are not watched for link changes",
                        source)
            return None
        holders = self._holders(address)
        if not holders:
            log.warning("netlink: no interface in this namespace holds %s; its paths are not watched for link "
                        "changes (only the path checker will see them fail)", address)
            return None
        watched = _Watched(1, holders[0], self._links[holders[0]].name, False, "")
        watched.up, watched.reason = self._status(address, watched)
        self._watched[address] = watched
        return watched.ifname

    def unwatch(self, source: str) -> None:
        """Undo one ``watch(source)``; the source is forgotten with its last one (no error if unwatched)."""
        address = _address(source)
        if address is None or address not in self._watched:
            return
        self._watched[address].count -= 1
        if self._watched[address].count <= 0:
            del self._watched[address]

    def state(self, source: str) -> bool | None:
        """True while ``source`` is usable, False while not, None if it is not watched."""
        watched = self._find(source)
        return watched.up if watched is not None else None

    def reason(self, source: str) -> str:
        """Why ``source`` is in its state ("link s1 lost carrier (netlink)"); "" if it is not watched."""
        watched = self._find(source)
        return watched.reason if watched is not None else ""

    # --- internals ------------------------------------------------------------------------------------

    def _find(self, source: str) -> _Watched | None:
        address = _address(source)
        return self._watched.get(address) if address is not None else None

    def _dump_done(self) -> None:
        kind, self._dumping = self._dumping, None
        if self._again:  # notifications were lost during this dump: trust nothing it told
            self._again = False
            self.resync()
        elif self._interrupted and kind is not None:  # it may have missed entries: ask again, drop nothing
            self._pending.insert(0, kind)
        elif kind == RTM_GETLINK:
            for index in [i for i, link in self._links.items() if link.seen < self._generation]:
                del self._links[index]
        elif kind == RTM_GETADDR:
            for address, holders in list(self._addresses.items()):
                for index in [i for i, seen in holders.items() if seen < self._generation]:
                    self._drop_address(address, index)

    def _drop_address(self, address: str, index: int) -> None:
        holders = self._addresses.get(address, {})
        holders.pop(index, None)
        if not holders:
            self._addresses.pop(address, None)

    def _holders(self, address: str) -> list[int]:
        return sorted(i for i in self._addresses.get(address, ()) if i in self._links)

    def _status(self, address: str, watched: _Watched) -> tuple[bool, str]:
        """(up, reason) of a watched address, following it to the interface that holds it now."""
        holders = self._holders(address)
        if not holders:
            if watched.ifindex not in self._links:
                return False, f"link {watched.ifname} was removed (netlink)"
            return False, f"address {address} was removed from {watched.ifname} (netlink)"
        if watched.ifindex not in holders:
            watched.ifindex = holders[0]
        link = self._links[watched.ifindex]
        watched.ifname = link.name
        if not link.flags & IFF_UP:
            return False, f"link {link.name} is administratively down (netlink)"
        if not link.flags & IFF_LOWER_UP:
            return False, f"link {link.name} lost carrier (netlink)"
        return True, f"link {link.name} is up with carrier (netlink)"

    def _evaluate(self) -> list[LinkChanged]:
        changes = []
        for address, watched in self._watched.items():
            up, watched.reason = self._status(address, watched)
            if up != watched.up:
                watched.up = up
                changes.append(LinkChanged(address, watched.ifname, up, watched.reason))
        return changes


class LinkWatch:
    """Watches, over rtnetlink, the interfaces that hold the given source addresses and calls
    ``on_change(source, ifname, up, reason)`` on the loop's thread at each transition of one of them.

    Made inside a running loop. ``sock``: an unbound ``NETLINK_ROUTE`` socket to use (one made in another
    network namespace watches that namespace); by default one is opened in the current namespace."""

    def __init__(self, on_change: OnChange, *, sock: socket.socket | None = None) -> None:
        self._on_change = on_change
        self._loop = asyncio.get_running_loop()
        self._table = LinkTable()
        self._sock: socket.socket | None = None
        try:
            if sock is None:
                sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        except OSError as e:
            log.warning("netlink: cannot open an rtnetlink socket (%s); %s", e, _FALLBACK)
            return
        try:
            _grow_rcvbuf(sock)
            sock.bind((0, GROUPS))
            self._read_tables(sock)
            sock.setblocking(False)
            self._loop.add_reader(sock.fileno(), self._readable)
        except OSError as e:
            sock.close()
            log.warning("netlink: cannot read links and addresses over rtnetlink (%s); %s", e, _FALLBACK)
            return
        self._sock = sock

    @property
    def available(self) -> bool:
        """The socket is open: link changes are being watched."""
        return self._sock is not None

    def watch(self, source: str) -> str | None:
        """Start watching the interface that holds the local address ``source`` (each call wants one
        ``unwatch``); its name, or None when nothing is watched: no interface holds ``source`` (logged),
        it is not an IP address, or netlink is not available. See ``state`` for its state now."""
        return self._table.watch(source) if self._sock is not None else None

    def unwatch(self, source: str) -> None:
        """Undo one ``watch(source)``."""
        self._table.unwatch(source)

    def state(self, source: str) -> bool | None:
        """True while ``source``'s interface is up with carrier and holds it, False while not, None if
        ``source`` is not watched."""
        return self._table.state(source)

    def reason(self, source: str) -> str:
        """Why ``source`` is in its present state; "" if it is not watched."""
        return self._table.reason(source)

    def close(self) -> None:
        """Stop watching and close the socket (again: nothing)."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if not self._loop.is_closed():
            self._loop.remove_reader(sock.fileno())
        sock.close()

    async def __aenter__(self) -> LinkWatch:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.close()

    # --- internals ------------------------------------------------------------------------------------

    def _read_tables(self, sock: socket.socket) -> None:
        """The start: both dumps, read with blocking calls (see the module's comment)."""
        sock.settimeout(DUMP_TIMEOUT)
        self._table.resync()
        self._send_request(sock)
        while not self._table.synced:
            try:
                self._table.feed(sock.recv(_RECV_SIZE))
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    raise
                self._table.resync()
            self._send_request(sock)

    def _send_request(self, sock: socket.socket) -> None:
        request = self._table.request()
        if request is not None:
            sock.send(request)

    def _readable(self) -> None:
        for _ in range(_BATCH):
            sock = self._sock
            if sock is None:  # closed, perhaps by a callback
                return
            changes: list[LinkChanged] = []
            try:
                try:
                    changes = self._table.feed(sock.recv(_RECV_SIZE))
                except OSError as e:
                    if e.errno != errno.ENOBUFS:
                        raise
                    log.warning("netlink: receive buffer overflowed, link notifications were lost; reading every "
                                "link and address again")
                    self._table.resync()
                self._send_request(sock)  # after an overflow too: nothing else may come to prompt it
            except BlockingIOError:
                return
            except OSError as e:
                log.warning("netlink: the rtnetlink socket failed (%s); from now on %s", e, _FALLBACK)
                self.close()
                return
            self._report(changes)  # last: a callback may close the watch

    def _report(self, changes: list[LinkChanged]) -> None:
        for change in changes:
            log.info("%s: %s", change.source, change.reason)
            try:
                self._on_change(change.source, change.ifname, change.up, change.reason)
            except Exception:  # one bad callback must not stop the watch
                log.exception("netlink: on_change(%s) failed", change)


def _address(text: Any) -> str | None:
    """``text`` as a canonical IP address string, or None if it is not one."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _grow_rcvbuf(sock: socket.socket) -> None:
    """Ask for RCVBUF bytes of receive buffer: beyond net.core.rmem_max when we may (CAP_NET_ADMIN)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
