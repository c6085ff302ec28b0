"""Array families: how one configured ``[[target]]`` becomes iSCSI targets, target ports and target port
groups over its controllers, and which controller owns each logical unit.

The four profiles (the seed's advice turns on them):

``portal``
    One IQN on every portal; discovery through any portal lists that IQN with every portal address.
    With ``portal_group`` tables each group is a target port group; with ``controller`` tables each
    controller is one. Every port group is active/optimized.
``multi-iqn``
    One IQN per portal (``iqn_per = "portal"``: ``<iqn>-a1``, ``<iqn>-a2``, ``<iqn>-b1`` ...) or per
    controller (``<iqn>-a``, ``<iqn>-b``), as DataCore and StarWind arrays present them. Every IQN
    carries the same logical units (same NAA and serial, one backstore), so a host must log in to
    them all (the wildcard ``*``). Each controller is one target port group; all active/optimized.
``alua``
    One IQN, each controller one target port group (TPGT = target port group id = relative port id =
    controller index + 1). The owner of a LU is active/optimized, the other controllers are
    active/non-optimized or standby (``non_owner_state``); a failed controller is unavailable.
    Standard INQUIRY reports TPGS=11b (implicit and explicit) or 01b with ``explicit = false``.
    SET TARGET PORT GROUPS (SPC-4 6.45) moves ownership; so do, implicitly, the owner's failure
    (``implicit_on_owner_loss``) and ``implicit_after_commands`` consecutive medium-access commands
    through a non-owner port. A move spends ``transition_time`` seconds in the transitioning state
    (every command but INQUIRY, REPORT LUNS, RTPG, RSOC, REQUEST SENSE and STPG gets NOT READY /
    04h/0Ah), then queues ASYMMETRIC ACCESS STATE CHANGED (2Ah/06h) for every I_T nexus except the one
    that sent STPG (SPC-4 5.15.2.7). Standby gives NOT READY / 04h/0Bh, unavailable 04h/0Ch.
``rdac``
    LSI/Engenio active/passive pair; see ``sanpath.target.rdac`` for the exact commands and sense. Its
    LUs answer INQUIRY as those arrays do (vendor ``LSI``, product ``INF-01-00``), so a multipath
    configuration picks its LSI/Engenio device section (rdac handler, prio and checker) by itself.

Ownership is kept per LU, so two LUs may be owned by different controllers. The controllers share the
LU objects (and so the backstore): data written through one reads back through the other.

The layout is expressed in the target object model (model.py): ``Array.targets`` are the targets the
server serves, and their TPGs are the array's SCSI target ports; nothing else keeps a copy of it.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from dataclasses import dataclass, field

from ..blockdev import BlockDevice
from ..errors import ConfigError
from ..scsi import constants as c
from ..scsi.constants import AluaState, Opcode, Tpgs
from .common import GOOD, CheckCondition, Command, Nexus, PortGroupInfo, ScsiResult, invalid_param
from .config import LunSpec, TargetSpec, lun_naa, lun_serial
from .lu import PRODUCT, VENDOR, AluaGate, CommandInfo, LogicalUnit, LuProfile
from .model import LUN, TPG, MappedLUN, NetworkPortal, NodeACL, Target
from .pr import Access

log = logging.getLogger(__name__)

STATE_NAMES: dict[int, str] = {
    AluaState.ACTIVE_OPTIMIZED: "active/optimized",
    AluaState.ACTIVE_NON_OPTIMIZED: "active/non-optimized",
    AluaState.STANDBY: "standby",
    AluaState.UNAVAILABLE: "unavailable",
    AluaState.TRANSITIONING: "transitioning",
}
SET_TARGET_PORT_GROUPS = 0x0A  # MAINTENANCE OUT service action (SPC-4 6.45)
STPG_FAILED: c.AscPair = (0x67, 0x0A)  # SET TARGET PORT GROUPS COMMAND FAILED


@dataclass(slots=True)
class Controller:
    name: str
    index: int
    portals: list[tuple[str, int]]
    failed: bool = False

    @property
    def tpg_id(self) -> int:
        return self.index + 1


@dataclass(slots=True)
class _Move:
    to: str
    nexus: Nexus | None
    timer: asyncio.TimerHandle | None = None


@dataclass(slots=True)
class _LunState:
    owner: str
    move: _Move | None = None
    streak: tuple[str, int] = ("", 0)  # (non-owner controller, consecutive I/O commands through it)
    moves: int = 0
    history: list[str] = field(default_factory=list)


class Array:
    """The controllers, target ports and shared logical units of one configured target."""

    def __init__(self, spec: TargetSpec) -> None:
        from .backstore import FileBackstore, MemoryBackstore

        self.spec = spec
        self.profile = spec.profile
        self.controllers = {cs.name: Controller(cs.name, i, list(cs.portals)) for i, cs in enumerate(spec.controllers)}
        self._by_tpg = {ctl.tpg_id: ctl for ctl in self.controllers.values()}
        self.state: dict[int, _LunState] = {}
        self.luns: dict[int, LogicalUnit] = {}
        for lun in spec.luns:
            backstore: BlockDevice
            if lun.path is None:
                backstore = MemoryBackstore(lun.size or 0, block_size=lun.block_size)
            else:
                backstore = FileBackstore(lun.path, size=lun.size, block_size=lun.block_size)
            self.state[lun.id] = _LunState(spec.owner if self.controllers else "")
            self.luns[lun.id] = self._make_lu(lun, backstore)
        self.targets = self._layout()
        # the array's SCSI target ports: the TPGs of all its targets (the same objects, for RTPG per command)
        self.ports: list[TPG] = [tpg for t in self.targets for tpg in t.tpgs]

    def _make_lu(self, lun: LunSpec, backstore: BlockDevice) -> LogicalUnit:
        serial = lun_serial(self.spec.iqn, lun)
        profile: LuProfile | None = None
        vendor, product = VENDOR, PRODUCT
        if self.profile == "alua":
            profile = AluaProfile(self, lun.id)
        elif self.profile == "rdac":
            from .rdac import RDAC_PRODUCT, RDAC_VENDOR, RdacProfile

            profile = RdacProfile(self, lun.id)
            vendor, product = RDAC_VENDOR, RDAC_PRODUCT
        # No POWER ON unit attention for each new session: initiators that do not retry on UNIT
        # ATTENTION would fail their first command. Fault injection can turn it on.
        return LogicalUnit(backstore, naa=lun_naa(serial), serial=serial, port_groups=lambda: self.port_groups(lun.id),
                           alua_state=lambda tpg_id: self.alua_state_through(lun.id, tpg_id),
                           read_only=lun.read_only, luns=lambda: sorted(self.luns), ua_on_new_nexus=False,
                           lbppbe=lun.lbppbe, copy_targets=self.luns.values,
                           implicit_transition_time=min(255, round(self.spec.transition_time + 0.49)),
                           profile=profile, vendor=vendor, product=product)

    # --- layout -----------------------------------------------------------------------------------

    def _layout(self) -> list[Target]:
        """The targets, each with its TPGs: (IQN, TPGT, relative port id, target port group id,
        controller, portals) per SCSI target port, as the profile lays them out."""
        spec = self.spec
        ports: list[tuple[str, int, int, int, str | None, tuple[tuple[str, int], ...]]] = []
        if not self.controllers:
            ports = [(spec.iqn, g.tag, i + 1, g.tag, None, g.portals) for i, g in enumerate(spec.portal_groups)]
        elif self.profile != "multi-iqn":
            ports = [(spec.iqn, ctl.tpg_id, ctl.tpg_id, ctl.tpg_id, ctl.name, tuple(ctl.portals))
                     for ctl in self.controllers.values()]
        else:
            for ctl in self.controllers.values():
                tag = ctl.name.lower()
                if spec.iqn_per == "controller":
                    ports.append((f"{spec.iqn}-{tag}", 1, len(ports) + 1, ctl.tpg_id, ctl.name, tuple(ctl.portals)))
                else:
                    for j, portal in enumerate(ctl.portals):
                        ports.append((f"{spec.iqn}-{tag}{j + 1}", 1, len(ports) + 1, ctl.tpg_id, ctl.name, (portal,)))
        # every TPG carries every LU; with an initiator list each initiator sees every LUN at its number
        luns = tuple(LUN(n, lu.serial, lu) for n, lu in self.luns.items())
        acls = tuple(NodeACL(name, tuple(MappedLUN(n, n) for n in self.luns)) for name in spec.initiators)
        tpgs: dict[str, list[TPG]] = {}
        for iqn, tpgt, rel, tpg_id, ctl_name, portals in ports:
            tpgs.setdefault(iqn, []).append(TPG(tpgt, rel, tpg_id, ctl_name, tuple(NetworkPortal(*p) for p in portals),
                                                luns, acls))
        return [Target(iqn, spec.alias, tuple(group), spec.chap) for iqn, group in tpgs.items()]

    def target_iqns(self) -> list[str]:
        return [t.iqn for t in self.targets]

    def rebind(self, host: str, port: int) -> None:
        """A portal configured with port 0 takes the port the kernel chose."""
        def fix(ps: tuple[tuple[str, int], ...]) -> list[tuple[str, int]]:
            return [(h, port) if (h, p) == (host, 0) else (h, p) for h, p in ps]

        for tpg in self.ports:
            tpg.network_portals = tuple(NetworkPortal(*p) for p in fix(tpg.network_portals))
        for ctl in self.controllers.values():
            ctl.portals = fix(tuple(ctl.portals))

    # --- states -----------------------------------------------------------------------------------

    def controller_of(self, nexus: Nexus) -> Controller | None:
        return self._by_tpg.get(nexus.tpg_id) if self.controllers else None

    def owner(self, lun: int) -> str:
        return self.state[lun].owner

    def transitioning(self, lun: int) -> bool:
        return self.state[lun].move is not None

    def moving_to(self, lun: int) -> str | None:
        move = self.state[lun].move
        return move.to if move is not None else None

    def alua_state(self, lun: int, ctl: Controller) -> int:
        if ctl.failed:
            return AluaState.UNAVAILABLE
        if self.profile in ("portal", "multi-iqn"):
            return AluaState.ACTIVE_OPTIMIZED
        st = self.state[lun]
        if st.move is not None:
            return AluaState.TRANSITIONING
        if ctl.name == st.owner:
            return AluaState.ACTIVE_OPTIMIZED
        if self.profile == "alua" and self.spec.non_owner_state == "non-optimized":
            return AluaState.ACTIVE_NON_OPTIMIZED
        return AluaState.STANDBY

    def alua_state_through(self, lun: int, tpg_id: int) -> int:
        """The ALUA state of LU ``lun`` through target port group ``tpg_id``: what ``port_groups`` says of
        that group, without building the list (it is asked once per command)."""
        ctl = self._by_tpg.get(tpg_id)
        return AluaState.ACTIVE_OPTIMIZED if ctl is None else self.alua_state(lun, ctl)

    def port_groups(self, lun: int) -> list[PortGroupInfo]:
        """What RTPG reports for LU ``lun`` (SPC-4 6.37)."""
        if not self.controllers:
            return [PortGroupInfo(p.tpg_id, AluaState.ACTIVE_OPTIMIZED, (p.relative_port_id,)) for p in self.ports]
        preferred = self.profile in ("alua", "rdac")
        return [PortGroupInfo(ctl.tpg_id, self.alua_state(lun, ctl),
                              tuple(p.relative_port_id for p in self.ports if p.controller == ctl.name),
                              preferred and ctl.name == self.spec.owner)
                for ctl in self.controllers.values()]

    def describe(self) -> dict[str, object]:
        """For ``sanpath target status``."""
        return {
            "iqn": self.spec.iqn, "profile": self.profile, "targets": self.target_iqns(),
            "controllers": [{"name": ctl.name, "failed": ctl.failed, "tpg_id": ctl.tpg_id,
                             "portals": [f"{h}:{p}" for h, p in ctl.portals]} for ctl in self.controllers.values()],
            "luns": [{"id": lun, "owner": st.owner or None, "transitioning": st.move is not None, "moves": st.moves,
                      "states": {ctl.name: STATE_NAMES.get(self.alua_state(lun, ctl), "?")
                                 for ctl in self.controllers.values()}}
                     for lun, st in sorted(self.state.items())],
        }

    # --- ownership moves --------------------------------------------------------------------------

    def move(self, lun: int, to: str, *, reason: str, nexus: Nexus | None = None) -> bool:
        """Move LU ``lun`` to controller ``to``; returns False when nothing had to move. With a
        transition time the LU is transitioning first; the move completes on the event loop."""
        if to not in self.controllers:
            raise ConfigError("controller", f"{to!r} is not a controller of {self.spec.iqn}; "
                              f"use one of {', '.join(self.controllers)}")
        st = self.state[lun]
        if st.move is not None:
            if st.move.to == to:
                return False
            if st.move.timer is not None:
                st.move.timer.cancel()
        elif st.owner == to:
            return False
        log.info("%s: LUN %d moves from controller %s to %s (%s)", self.spec.iqn, lun, st.owner, to, reason)
        st.history.append(f"{st.owner}->{to}: {reason}")
        st.streak = ("", 0)
        st.move = _Move(to, nexus)
        delay = self.spec.transition_time
        if delay > 0:
            st.move.timer = asyncio.get_running_loop().call_later(delay, self._finish, lun)
        else:
            self._finish(lun)
        return True

    def _finish(self, lun: int) -> None:
        st = self.state[lun]
        if st.move is None:
            return
        move, st.move = st.move, None
        st.owner = move.to
        st.moves += 1
        if self.profile == "alua":
            self.luns[lun].alua_state_changed(except_nexus=move.nexus)

    def fail_controller(self, name: str) -> None:
        """Every portal of the controller is down (the fault layer closes them); LUs it owned move to a
        surviving controller when ``implicit_on_owner_loss``."""
        ctl = self.controllers[name]
        ctl.failed = True
        survivors = [c for c in self.controllers.values() if not c.failed]
        if not survivors or not self.spec.implicit_on_owner_loss or self.profile not in ("alua", "rdac"):
            return
        for lun, st in self.state.items():
            target = st.move.to if st.move is not None else st.owner
            if target == name:
                self.move(lun, survivors[0].name, reason=f"controller {name} failed")

    def restore_controller(self, name: str) -> None:
        """The controller is back; ownership stays where it moved (no automatic failback)."""
        self.controllers[name].failed = False

    def note_io(self, lun: int, nexus: Nexus) -> None:
        """Implicit transition on sustained I/O through a non-owner port (alua)."""
        threshold = self.spec.implicit_after_commands
        ctl = self.controller_of(nexus)
        st = self.state[lun]
        if not threshold or ctl is None or st.move is not None:
            return
        if ctl.name == st.owner:
            st.streak = ("", 0)
            return
        count = st.streak[1] + 1 if st.streak[0] == ctl.name else 1
        st.streak = (ctl.name, count)
        if count >= threshold:
            self.move(lun, ctl.name, reason=f"{count} I/O commands through controller {ctl.name}")

    async def close(self) -> None:
        for st in self.state.values():
            if st.move is not None and st.move.timer is not None:
                st.move.timer.cancel()
        for lu in self.luns.values():
            await lu.close()


# --- the alua profile's LU behaviour ---------------------------------------------------------------


async def set_target_port_groups(lu: LogicalUnit, cmd: Command) -> ScsiResult:
    """SET TARGET PORT GROUPS (SPC-4 6.45): each 4-byte descriptor after a 4-byte header names a
    target port group and the state asked for. Asking active/optimized for a group moves the LU's
    ownership to that controller; asking active/non-optimized or standby for the owner's group moves
    it to the first other healthy controller; asking a group for the state it is in is a no-op."""
    profile = lu.profile
    assert isinstance(profile, AluaProfile)
    array, lun = profile.array, profile.lun
    length = cmd.u32(6)
    data = bytes(cmd.data_out[:length])
    if length and length < 4:
        raise invalid_param(0)
    if array.transitioning(lun):
        raise CheckCondition(c.SenseKey.NOT_READY, c.LU_NOT_ACCESSIBLE_TRANSITIONING, data_out_length=length)
    wanted: dict[int, int] = {}
    for off in range(4, len(data) - 3, 4):
        state, tpg = data[off] & 0x0F, struct.unpack_from(">H", data, off + 2)[0]
        if tpg not in array._by_tpg:
            raise invalid_param(off + 2)
        if state not in (AluaState.ACTIVE_OPTIMIZED, AluaState.ACTIVE_NON_OPTIMIZED, AluaState.STANDBY):
            raise invalid_param(off, 3)
        wanted[tpg] = state
    owner = array.owner(lun)
    to = owner
    for tpg, state in wanted.items():
        ctl = array._by_tpg[tpg]
        if state == AluaState.ACTIVE_OPTIMIZED:
            to = ctl.name
        elif ctl.name == owner and to == owner:
            others = [o for o in array.controllers.values() if o.name != owner and not o.failed]
            if others:
                to = others[0].name
    if array.controllers[to].failed:
        raise CheckCondition(c.SenseKey.HARDWARE_ERROR, STPG_FAILED, data_out_length=length)
    array.move(lun, to, reason="SET TARGET PORT GROUPS", nexus=cmd.nexus)
    return ScsiResult(GOOD, data_out_length=length)


_STPG = CommandInfo(Opcode.MAINTENANCE_OUT, "SET TARGET PORT GROUPS", set_target_port_groups,
                    bytes((0xA4, 0x1F, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0)),
                    service_action=SET_TARGET_PORT_GROUPS, alua=AluaGate.ANY)


class AluaProfile(LuProfile):
    """One LU of an ``alua`` array: TPGS, STPG, and the implicit-transition I/O counter."""

    def __init__(self, array: Array, lun: int) -> None:
        self.array = array
        self.lun = lun
        self.tpgs = Tpgs.BOTH if array.spec.explicit else Tpgs.IMPLICIT
        self.commands = (_STPG,) if array.spec.explicit else ()

    def check(self, lu: LogicalUnit, nexus: Nexus, info: CommandInfo) -> bool:
        if info.access != Access.ALLOWED:
            self.array.note_io(self.lun, nexus)
        return True
