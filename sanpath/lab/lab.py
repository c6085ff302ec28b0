"""The Lab: builds the reference topology in network namespaces, pulls and restores cables, shapes links,
runs processes inside the namespaces, and always tears down what it built.

A lab's state (its id, topology, every object created, which cables are pulled and which links shaped)
lives in a small JSON file, ``$SANPATH_LAB_DIR/NAME.json`` (default ``/run/sanpath-lab``), so that
``sanpath lab down`` in another process removes exactly what ``sanpath lab up`` made.

Cable pulls. By default a pull sets the *switch-port* end of the cable down (``ip link set p-LINK down``
in the switch's namespace). The NIC at the other end then loses carrier (NO-CARRIER, operstate DOWN,
its route marked "linkdown") but keeps its address and routes, as with a real pulled cable: traffic
is silently lost and the initiator must notice through its own timeouts (NOP-Out, replacement timeout).
``end="nic"`` sets the NIC itself down instead (an administrator's ``ip link set DEV down``): its routes
go away and connects over it fail at once with "network unreachable".

The array namespace holds every controller NIC, two of them on each subnet, so it routes by source
address: each controller address has its own routing table (``ip rule from ADDR``) pointing at its own
NIC, and ``arp_ignore=1``/``arp_announce=2`` keep each NIC answering only for its own address. Pulling
controller A's cable on subnet 1 therefore makes exactly A's portal on subnet 1 unreachable.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import socket
import subprocess
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from ..errors import ConfigError
from . import netns
from .netns import Created, Ledger, NetnsError
from .topology import ARRAY, BRIDGE, MANAGEMENT_SUBNET, Link, Topology, subnet, switch_role

NS_PREFIX = "sanpath-"
DEFAULT_STATE_DIR = "/run/sanpath-lab"
STATE_DIR_ENV = "SANPATH_LAB_DIR"
PULL_ENDS = ("switch", "nic")
DEFAULT_RATE = "1gbit"
DEFAULT_LATENCY = "20ms"
ROUTE_TABLE_BASE = 100
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
_RATE_RE = re.compile(r"^(\d+(?:\.\d+)?)([kmgt]?i?)(bit|bps)?$", re.IGNORECASE)
_PREFIXES = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
             "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


def state_dir() -> str:
    return os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR


def parse_rate(text: str) -> int:
    """A tc(8) rate ("1gbit", "100mbit", "125mbps", "1000000") -> bits per second. A bare number is
    bits per second, ``bps`` means bytes per second, as in tc."""
    m = _RATE_RE.match(text.strip())
    if not m:
        raise ConfigError("rate", f"{text!r} is not a rate; use tc's units: 1gbit, 100mbit, 125mbps")
    value = float(m.group(1)) * _PREFIXES[m.group(2).lower()] * (8 if (m.group(3) or "").lower() == "bps" else 1)
    if value < 8000:
        raise ConfigError("rate", f"{text!r} is below 8kbit; a link that slow is not worth emulating")
    return int(value)


def default_burst(rate: str) -> str:
    """One millisecond's worth of bytes at ``rate``, at least 32 KiB (several full frames, and enough
    for the veth's GSO segments): tbf needs burst >= rate / timer frequency to reach its rate."""
    return str(max(parse_rate(rate) // 8 // 1000, 32 * 1024))


class Lab:
    """One lab: ``up()`` builds it, ``down()`` removes it; also a context manager (up on enter if it is
    not up yet, down on exit, whatever happens in between)."""

    def __init__(self, name: str | None = None, topology: Topology | None = None, *,
                 state_path: str | None = None, lab_id: str | None = None) -> None:
        self.id = lab_id or secrets.token_hex(3)
        self.name = name or f"lab-{self.id}"
        if not _NAME_RE.match(self.name):
            raise ConfigError("name", f"{self.name!r}: use up to 32 letters, digits, '.', '_' or '-'")
        self.topology = topology or Topology()
        self.state_path = state_path or os.path.join(state_dir(), f"{self.name}.json")
        self.pulled: dict[str, str] = {}  # link -> end
        self.shaped: dict[str, dict[str, str]] = {}  # link -> {rate, burst, latency}
        self.ledger = Ledger(on_change=self._save)
        self._children: list[subprocess.Popen[Any]] = []
        self._is_up = False

    # --- naming -----------------------------------------------------------------------------------

    def ns(self, role: str) -> str:
        """The namespace of ``role`` (host, array, sw0, sw1, ...): ``sanpath-ID-ROLE``. A full lab
        namespace name is accepted as is."""
        if role.startswith(NS_PREFIX):
            return role
        if role not in self.topology.roles:
            raise ConfigError("namespace", f"no {role!r} in this lab; roles: {', '.join(self.topology.roles)}")
        return f"{NS_PREFIX}{self.id}-{role}"

    def link(self, name: str) -> Link:
        return self.topology.link(name)

    # --- state ------------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "id": self.id, "subnets": self.topology.subnets,
                "controllers": self.topology.controllers, "hosts": self.topology.hosts,
                "created": [e.to_json() for e in self.ledger.entries],
                "pulled": self.pulled, "shaped": self.shaped}

    def _save(self) -> None:
        if not self.ledger.entries and not self._is_up:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.state_path)
            return
        tmp = f"{self.state_path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(self.to_json(), f, indent=1)
        os.replace(tmp, self.state_path)

    @classmethod
    def load(cls, name: str, *, state_path: str | None = None) -> Lab:
        """The lab that ``up()`` (in this or another process) saved under ``name``."""
        path = state_path or os.path.join(state_dir(), f"{name}.json")
        try:
            with open(path) as f:
                data = json.load(f)
        except FileNotFoundError:
            raise NetnsError(f"no lab named {name!r} is up (no {path}); `sanpath lab status` lists them") from None
        except (OSError, ValueError) as e:
            raise NetnsError(f"cannot read the lab state {path}: {e}") from None
        lab = cls(data["name"], Topology(data["subnets"], data["controllers"], data.get("hosts", 1)),
                  state_path=path, lab_id=data["id"])
        lab.ledger.entries = [Created.from_json(e) for e in data["created"]]
        lab.pulled = dict(data.get("pulled", {}))
        lab.shaped = dict(data.get("shaped", {}))
        lab._is_up = True
        return lab

    @staticmethod
    def names() -> list[str]:
        """Names of the labs with a state file in the state directory."""
        try:
            return sorted(f[:-5] for f in os.listdir(state_dir()) if f.endswith(".json"))
        except FileNotFoundError:
            return []

    # --- up / down --------------------------------------------------------------------------------

    def up(self, shape: str | None = None) -> Lab:
        """Build the topology; shape every storage link to ``shape`` (e.g. "1gbit") when given. On any
        failure (or Ctrl-C) part-way, everything made so far is removed before the error propagates."""
        netns.require_root()
        if self._is_up:
            raise NetnsError(f"lab {self.name} is already up")
        os.makedirs(os.path.dirname(self.state_path) or ".", exist_ok=True)
        try:
            fd = os.open(self.state_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise NetnsError(f"a lab named {self.name!r} is already up ({self.state_path}); "
                             f"`sanpath lab down --name {self.name}` first, or pick another --name") from None
        os.close(fd)
        self._is_up = True
        try:
            self._build()
            self.wait_links()
            if shape:
                for link in self.topology.storage_links():
                    self.shape(link.name, shape)
        except BaseException:
            with contextlib.suppress(Exception):
                self.down()
            raise
        return self

    def _build(self) -> None:
        topo = self.topology
        for role in topo.roles:
            self.ledger.add_netns(self.ns(role))
        array = self.ns(ARRAY)
        netns.sysctl(array, {"net.ipv4.conf.all.arp_ignore": 1, "net.ipv4.conf.all.arp_announce": 2,
                             "net.ipv4.conf.all.rp_filter": 0, "net.ipv4.conf.default.rp_filter": 0})
        for sw in topo.switches:
            self.ledger.add_bridge(BRIDGE, self.ns(sw))
        for link in topo.links:
            here, there = self.ns(link.role), self.ns(link.switch)
            self.ledger.add_veth(link.name, here, link.port, there)
            netns.set_master(there, link.port, BRIDGE)
            netns.set_link(there, link.port, "up")
            netns.add_address(here, link.name, link.address)
            netns.set_link(here, link.name, "up")
        netns.add_address(self.ns(switch_role(MANAGEMENT_SUBNET)), BRIDGE, topo.station_address())
        for link in topo.links:
            if link.role == ARRAY:
                netns.ip(array, "rule", "add", "from", link.ip, "lookup", str(self._table(link)),
                         "pref", str(1000 + self._table(link)))
                self._route(link)

    def wait_links(self, timeout: float = 5.0) -> None:
        """Wait until every NIC whose cable is plugged in reports operstate UP (the kernel's link watch
        settles carrier changes asynchronously, up to a second after ``ip link set up``)."""
        deadline = time.monotonic() + timeout
        while True:
            waiting = [row["link"] for row in self.status()["links"]
                       if row["state"] != "UP" and not row["pulled"]]
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise NetnsError(f"lab {self.name}: links {', '.join(waiting)} did not come up in {timeout:g}s")
            time.sleep(0.05)

    def _table(self, link: Link) -> int:
        return ROUTE_TABLE_BASE + [x.name for x in self.topology.links].index(link.name)

    def _route(self, link: Link) -> None:
        netns.ip(self.ns(ARRAY), "route", "replace", str(subnet(link.subnet)), "dev", link.name,
                 "src", link.ip, "table", str(self._table(link)))

    def down(self) -> None:
        """Stop the processes started here and any still inside the lab's namespaces, then delete every
        object the lab recorded, and its state file. Raises NetnsError listing anything left over.
        A lab that is not up (never built, or already down) is left alone, state file included."""
        if not self._is_up and not self.ledger.entries:
            return
        for child in self._children:
            if child.poll() is None:
                child.terminate()
        for child in self._children:
            try:
                child.wait(timeout=3)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        self._children.clear()
        problems = self.ledger.teardown()
        self._is_up = False
        self.pulled.clear()
        self.shaped.clear()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.state_path)
        if problems:
            raise NetnsError(f"lab {self.name}: teardown left things behind: {'; '.join(problems)}")

    def leftovers(self) -> list[str]:
        """Namespaces of this lab that still exist (empty after a clean ``down``)."""
        prefix = f"{NS_PREFIX}{self.id}-"
        return [n for n in netns.list_netns() if n.startswith(prefix)]

    def __enter__(self) -> Lab:
        if not self._is_up:
            self.up()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.down()

    # --- cables and shaping -----------------------------------------------------------------------

    def pull(self, link: str, end: str = "switch") -> None:
        """Pull ``link``'s cable: set its switch port down (default) or, with ``end="nic"``, the NIC."""
        if end not in PULL_ENDS:
            raise ConfigError("end", f"{end!r}: pull the 'switch' end (carrier loss) or the 'nic' end (admin down)")
        x = self.link(link)
        if end == "switch":
            netns.set_link(self.ns(x.switch), x.port, "down")
        else:
            netns.set_link(self.ns(x.role), x.name, "down")
        self.pulled[link] = end
        self._save()

    def restore(self, link: str) -> None:
        """Plug ``link``'s cable back in: both ends up (and the controller's source route back, which the
        kernel drops when a NIC goes admin down)."""
        x = self.link(link)
        netns.set_link(self.ns(x.role), x.name, "up")
        netns.set_link(self.ns(x.switch), x.port, "up")
        if x.role == ARRAY:
            self._route(x)
        self.pulled.pop(link, None)
        self._save()

    def shape(self, link: str, rate: str = DEFAULT_RATE, burst: str | None = None,
              latency: str = DEFAULT_LATENCY) -> None:
        """Limit ``link`` to ``rate`` in both directions: a tbf qdisc on the egress of each veth end (the
        NIC's sending side and the switch port's sending side)."""
        x = self.link(link)
        burst = burst or default_burst(rate)
        parse_rate(rate)
        netns.tbf_replace(self.ns(x.role), x.name, rate, burst, latency)
        netns.tbf_replace(self.ns(x.switch), x.port, rate, burst, latency)
        self.shaped[link] = {"rate": rate, "burst": burst, "latency": latency}
        self._save()

    def unshape(self, link: str) -> None:
        x = self.link(link)
        netns.qdisc_del(self.ns(x.role), x.name)
        netns.qdisc_del(self.ns(x.switch), x.port)
        self.shaped.pop(link, None)
        self._save()

    def qdiscs(self, link: str) -> dict[str, list[dict[str, Any]]]:
        """``tc -s qdisc show`` of both ends of ``link``: {"nic": [...], "port": [...]}."""
        x = self.link(link)
        return {"nic": netns.qdiscs(self.ns(x.role), x.name), "port": netns.qdiscs(self.ns(x.switch), x.port)}

    # --- running things inside --------------------------------------------------------------------

    def prefix(self, role: str) -> list[str]:
        """argv prefix running a command in ``role``'s namespace: ``["ip", "netns", "exec", NS]``."""
        return netns.exec_argv(self.ns(role), [])

    def exec_in(self, role: str, argv: Sequence[str], *, check: bool = True, timeout: float | None = 60,
                **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` to completion inside ``role``'s namespace; output captured as text."""
        kwargs.setdefault("capture_output", True)
        proc = subprocess.run(netns.exec_argv(self.ns(role), argv), text=True, timeout=timeout, check=False,
                              **kwargs)
        if check and proc.returncode != 0:
            raise NetnsError(f"`{' '.join(argv)}` in {self.ns(role)} failed (exit {proc.returncode}): "
                             f"{(proc.stderr or '').strip()[-2000:]}")
        return proc

    def popen_in(self, role: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside ``role``'s namespace; ``down()`` terminates it if it is still running."""
        proc: subprocess.Popen[Any] = subprocess.Popen(netns.exec_argv(self.ns(role), argv), **kwargs)
        self._children.append(proc)
        return proc

    def socket_in(self, role: str, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM) -> socket.socket:
        """A socket living in ``role``'s namespace, usable from this process (see netns.socket_in)."""
        return netns.socket_in(self.ns(role), family, type)

    def reachable(self, role: str, address: str, port: int = 3260, timeout: float = 1.0) -> bool:
        """Whether a TCP connection from ``role``'s namespace to address:port is accepted in time."""
        with self.socket_in(role) as s:
            s.settimeout(timeout)
            try:
                s.connect((address, port))
            except OSError:
                return False
            return True

    # --- status -----------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The lab as data: namespaces, and per link its addresses, live NIC state, pull and shaping."""
        live: dict[str, dict[str, dict[str, Any]]] = {}
        for role in self.topology.roles:
            ns = self.ns(role)
            live[role] = {d["ifname"]: d for d in netns.links(ns)} if netns.netns_exists(ns) else {}
        rows = []
        for x in self.topology.links:
            nic = live[x.role].get(x.name, {})
            rows.append({"link": x.name, "namespace": self.ns(x.role), "address": x.address,
                         "controller": x.controller, "switch": x.switch, "port": x.port,
                         "state": nic.get("operstate", "MISSING"), "pulled": self.pulled.get(x.name, ""),
                         "shaped": self.shaped.get(x.name, {})})
        return {"name": self.name, "id": self.id, "subnets": self.topology.subnets, "hosts": self.topology.hosts,
                "controllers": list(self.topology.controller_names),
                "namespaces": {r: self.ns(r) for r in self.topology.roles},
                "station": self.topology.station_address(), "state_file": self.state_path, "links": rows}
