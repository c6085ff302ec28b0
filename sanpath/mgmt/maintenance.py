"""Maintenance mode and the host's multipath settings, with the seed's rules enforced by the server for
any client: multipathing is the same on every host of the pool, and it changes only in maintenance
mode. XenServer leaves both to XenCenter; here they are refused with the rule and what to do.

Entering maintenance mode disables the host (no new plugs go to it) and makes its exports refuse new NBD
clients; it then waits for the clients already connected (the host's consumers, as VMs are XenServer's)
to leave, or with ``force`` has the host's daemon drain and close them. A change of multipath settings
unplugs every plugged PBD of the host, changes the setting and replugs exactly those PBDs; the list is
kept on the host row meanwhile (``multipathing_replug``), so that a change cut short is finished by
running it again, and no PBD is left half-plugged."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .errors import XenError
from .store.model import PBD, Host
from .workflow import HEARTBEAT, Workflow, live

MAINTENANCE = "MAINTENANCE_MODE"  # host other-config, as XenServer writes it: "true" while in maintenance mode
FORCE = "maintenance_force"  # "true": the host's daemon drains and closes its exports' NBD clients
REPLUG = "multipathing_replug"  # the PBDs a multipath change unplugged and has still to replug
HANDLERS = ("dmp", "rdac")
EVACUATE_TIMEOUT = 120.0
EVACUATE_POLL = 0.1
RULE = ("multipathing is changed only in maintenance mode, and is kept the same on every host of the pool "
        "(the design guide's rule)")

Progress = Callable[[dict[str, Any]], Awaitable[None]]


def in_maintenance(host: Host) -> bool:
    return host.other_config.get(MAINTENANCE) == "true"


def _check_handler(handler: str | None) -> None:
    if handler is not None and handler not in HANDLERS:
        raise XenError("VALUE_INVALID", f"handler {handler!r}: use dmp (DM-MP) or rdac (MPP RDAC)", handler)


class HostOps:
    def __init__(self, workflow: Workflow) -> None:
        self.workflow = workflow
        self.store = workflow.store

    async def _live(self, host: Host) -> None:
        if not live(host, await self.store.now()):
            raise XenError("HOST_OFFLINE", f"host {host.name_label} ({host.uuid}) is not reporting, so what runs on "
                           "it is not known", host.uuid)

    # --- maintenance mode ------------------------------------------------------------------------------

    async def enter(self, host: Host, *, force: bool = False, timeout: float = EVACUATE_TIMEOUT) -> Host:
        """Disable the host and wait until no NBD client is connected to its exports (with ``force``: until
        its daemon has drained and closed them). On timeout the host is enabled again."""
        await self._live(host)
        config = {**host.other_config, MAINTENANCE: "true"}
        config.pop(FORCE, None)
        if force:
            config[FORCE] = "true"
        host = await self.store.update_host(host.uuid, enabled=False, other_config=config)
        self.workflow.requested()
        deadline = time.monotonic() + timeout
        next_live_check = 0.0
        while True:
            busy = await self._busy(host)
            if not busy:
                return await self.store.host(host.uuid)
            if time.monotonic() >= next_live_check:
                next_live_check = time.monotonic() + HEARTBEAT / 4
                if not live(await self.store.host(host.uuid), await self.store.now()):
                    await self.exit(host)
                    raise XenError("HOST_OFFLINE", f"host {host.name_label} stopped reporting while entering "
                                   "maintenance mode; it is enabled again", host.uuid)
            if time.monotonic() > deadline:
                await self.exit(host)
                detail = "; ".join(f"PBD {uuid}: {n} client(s) on {nbd}" for uuid, n, nbd in busy)
                raise XenError("CANNOT_EVACUATE_HOST", f"host {host.name_label}: NBD clients still connected after "
                               f"{timeout:g} s ({detail}); the host is enabled again", host.name_label, detail)
            await asyncio.sleep(EVACUATE_POLL)

    async def _busy(self, host: Host) -> list[tuple[str, int, str]]:
        """The host's attached PBDs whose export still has clients, or has not yet been told to refuse new
        ones (as their host last reported)."""
        busy = []
        for p in await self.store.pbds(host_uuid=host.uuid):
            if not p.currently_attached:
                continue
            clients = int(p.other_config.get("nbd_clients", "0") or 0)
            if clients or p.other_config.get("nbd_accepting") != "false":
                busy.append((p.uuid, clients, str(p.other_config.get("nbd", ""))))
        return busy

    async def exit(self, host: Host) -> Host:
        host = await self.store.host(host.uuid)
        if host.other_config.get(REPLUG):
            raise XenError("MULTIPATH_CHANGE_PENDING", f"host {host.name_label}: a change of multipath settings was "
                           "cut short; PBDs " + ", ".join(host.other_config[REPLUG]) + " are still to be replugged",
                           host.name_label)
        config = {k: v for k, v in host.other_config.items() if k not in (MAINTENANCE, FORCE)}
        host = await self.store.update_host(host.uuid, enabled=True, other_config=config)
        self.workflow.requested()
        return host

    # --- multipath settings ----------------------------------------------------------------------------

    async def set_multipathing(self, host: Host, on: bool, handler: str | None = None,
                               progress: Progress | None = None) -> dict[str, Any]:
        """Unplug every plugged PBD of the host, change the setting, replug exactly those PBDs. With
        handler rdac (the seed's MPP RDAC, whose install ends in a reboot) every data-path process of the
        host starts anew, as it does for any change here. ``progress`` hears each step as it is done:
        ``unplugged`` (per PBD), ``set-multipathing``, ``replugged`` (per PBD, with ``attached``)."""

        async def step(**fields: Any) -> None:
            if progress is not None:
                await progress({"host": host.name_label, "uuid": host.uuid, **fields})

        host = await self.store.host(host.uuid)
        _check_handler(handler)
        handler = handler or host.multipath_handle
        if not in_maintenance(host):
            raise XenError("HOST_NOT_IN_MAINTENANCE_MODE", f"host {host.name_label} is not in maintenance mode: "
                           f"{RULE}", host.name_label)
        await self._live(host)
        replug = list(host.other_config.get(REPLUG) or [])  # a change cut short: finish it
        if not replug:
            replug = [p.uuid for p in await self.store.pbds(host_uuid=host.uuid) if p.plugged or p.currently_attached]
            host = await self.store.update_host(host.uuid, other_config={**host.other_config, REPLUG: replug})
        for uuid in replug:
            await self.workflow.unplug(uuid, force=True)
            await step(step="unplugged", pbd=uuid)
        host = await self.store.update_host(host.uuid, multipathing=on, multipath_handle=handler)
        await step(step="set-multipathing", multipathing=on, handler=handler)

        async def replug_one(uuid: str) -> PBD:
            pbd = await self.workflow.plug(uuid, raise_error=False, in_maintenance=True)
            await step(step="replugged", pbd=uuid, attached=pbd.currently_attached,
                       paths=pbd.other_config.get(next((k for k in pbd.other_config if k.startswith("mpath-")), ""),
                                                  ""), error=(pbd.error or {}).get("error", ""))
            return pbd

        results = list(await asyncio.gather(*(replug_one(u) for u in replug)))
        failed = [p for p in results if p.error or not p.currently_attached]
        config = {k: v for k, v in host.other_config.items() if k != REPLUG}
        host = await self.store.update_host(host.uuid, other_config=config)
        for p in failed:
            await self.store.add_message(
                "PBD_REPLUG_FAILED", 2, "PBD", p.uuid,
                {"host": host.uuid, "host_name": host.name_label, "pbd": p.uuid, "sr": p.sr_uuid,
                 "error": p.error}, f"host {host.name_label}: PBD {p.uuid} could not be replugged after the "
                f"multipath change: {p.error.get('message', 'it did not attach')}")
        if failed:
            raise XenError("PBD_REPLUG_FAILED", f"host {host.name_label}: {len(failed)} of {len(replug)} PBD(s) did "
                           "not replug after the multipath change: " + "; ".join(
                               f"{p.uuid}: {p.error.get('error', '?')}: {p.error.get('message', '')}" for p in failed),
                           host.name_label, *(p.uuid for p in failed))
        return {"host": host.uuid, "name_label": host.name_label, "multipathing": host.multipathing,
                "multipath_handle": host.multipath_handle, "replugged": replug}

    async def rolling(self, on: bool, handler: str | None, progress: Progress, *, force: bool = False,
                      timeout: float = EVACUATE_TIMEOUT) -> list[dict[str, Any]]:
        """The pool's change, one host at a time: into maintenance mode, changed, out again (a host that
        was in maintenance mode already stays in it); stops at the first failure."""
        _check_handler(handler)
        done = []
        for host in await self.store.hosts():
            step = {"host": host.name_label, "uuid": host.uuid}
            if host.multipathing == on and handler in (None, host.multipath_handle):
                await progress({**step, "step": "unchanged"})
                continue
            was_in = in_maintenance(host)
            await progress({**step, "step": "maintenance-enter"})
            host = await self.enter(host, force=force, timeout=timeout)
            await progress({**step, "step": "set-multipathing"})
            result = await self.set_multipathing(host, on, handler)
            if not was_in:
                await progress({**step, "step": "maintenance-exit"})
                await self.exit(host)
            await progress({**step, "step": "done", "replugged": result["replugged"]})
            done.append(result)
        return done
