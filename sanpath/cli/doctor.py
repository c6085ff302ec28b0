"""``sanpath doctor``: the advisor. With no ``--target`` it checks the pool through the host daemon (every
host, PIF, SR and PBD; ``--host`` for one host's findings and the pool's). With ``--target`` it needs no
pool: it checks this machine's network against an array before anything is set up. Exit code 0 when
clean, 1 with warnings, 2 with errors (and 3 when the check itself could not run)."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from typing import Any

import click

from ..errors import ConfigError
from ..initiator.session import SessionConfig
from ..iscsi.auth import ChapCredentials
from ..mgmt import advisor
from ..mgmt.advisor import gather
from ..mgmt.advisor.facts import Facts
from ..mgmt.client import ApiClient, api_option, format_option, read_secret, run
from ..mgmt.errors import XenError
from ..mgmt.identity import check_iqn, generate_iqn
from ..mgmt.workflow import TargetSpec
from ..multipath import config as mpconfig
from .options import CHAP_SECRET_ENV

EXIT_NOT_RUN = 3


@click.command("doctor")
@click.option("--host", "host_name", metavar="NAME", help="Pool: only this host's findings (and the pool's).")
@click.option("--target", metavar="ADDR[,ADDR...]", help="No pool: check this machine against the array here.")
@click.option("--port", type=int, default=3260, show_default=True)
@click.option("--iqn", metavar="IQN|*", help="No pool: the target IQN you mean to pick (or * for every IQN).")
@click.option("--management", metavar="DEV", help="No pool: the management interface (default: the one "
              "carrying the default route).")
@click.option("--storage", metavar="DEV[,DEV...]", help="No pool: the storage NICs (default: every other NIC "
              "with an address).")
@click.option("--initiator-iqn", metavar="IQN", help="No pool: the IQN to log in to the array with (default: a "
              "generated one; give yours if the array's ACLs check it).")
@click.option("--chap-user", default="", help="No pool: CHAP user name (secret from --chap-secret-file or "
              f"${CHAP_SECRET_ENV}).")
@click.option("--chap-secret-file", type=click.Path(dir_okay=False))
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="No pool: a multipath "
              "configuration (TOML) to check the array's LUNs against.")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE", help="No pool: a multipath setting.")
@click.option("--links", "links_path", type=click.Path(dir_okay=False, exists=True), help="No pool: check the "
              "NICs recorded in this file (`ip -details -json address show` on that machine) instead of this "
              "machine's; no route is looked up then.")
@click.option("--facts", "facts_out", type=click.Path(dir_okay=False), help="Also write the facts gathered (JSON).")
@api_option
@format_option("text", "json")
def doctor(host_name: str | None, target: str | None, port: int, iqn: str | None, management: str | None,
           storage: str | None, initiator_iqn: str | None, chap_user: str, chap_secret_file: str | None,
           config_path: str | None, assignments: tuple[str, ...], links_path: str | None, facts_out: str | None,
           api: str | None, fmt: str) -> None:
    """Check a setup against the design guide's rules; each finding says which rule, where the guide states
    it, what was seen and what to change."""
    result: dict[str, Any] = {}

    def go() -> None:
        if target is None:
            standalone = [name for name, v in (("--iqn", iqn), ("--management", management), ("--storage", storage),
                                               ("--links", links_path), ("--config", config_path)) if v]
            if standalone:
                raise XenError("VALUE_INVALID", f"{', '.join(standalone)} go with --target (a check before any "
                               "pool)", standalone[0], advice="Add --target ADDR[,ADDR...], or leave them out to "
                               "check the pool.")
            params = {"host": host_name} if host_name else None
            result.update(ApiClient(api).call("GET", "/doctor", params=params))
            return
        if links_path and not management:
            raise XenError("VALUE_INVALID", "--links needs --management: a recorded list of links carries no "
                           "default route to tell the management interface by", "--links",
                           advice="Add --management DEV (the recorded machine's management interface).")
        facts = asyncio.run(_before_setup(target, port, iqn, management, storage, initiator_iqn, chap_user,
                                          chap_secret_file, config_path, assignments, links_path))
        if facts_out:
            with open(facts_out, "w") as f:
                json.dump(facts.to_json(), f, indent=2, sort_keys=True)
        result.update(advisor.report(advisor.check(facts)))

    try:
        run("doctor", go)
    except SystemExit as e:
        sys.exit(EXIT_NOT_RUN if e.code else 0)
    if fmt == "json":
        click.echo(json.dumps(result, indent=2, sort_keys=True))
    else:
        click.echo(advisor.render_report(result))
    sys.exit(advisor.Severity[result["status"].upper()].value)


async def _before_setup(target: str, port: int, iqn: str | None, management: str | None, storage: str | None,
                        initiator_iqn: str | None, chap_user: str, chap_secret_file: str | None,
                        config_path: str | None, assignments: tuple[str, ...], links_path: str | None) -> Facts:
    addresses = TargetSpec(target, port).addresses()
    secret = read_secret(chap_secret_file, CHAP_SECRET_ENV) if chap_user else ""
    config = SessionConfig(host="", initiator_name=check_iqn(initiator_iqn) if initiator_iqn else generate_iqn(),
                           chap=ChapCredentials(chap_user, secret.encode()) if chap_user else None,
                           login_timeout=3.0, nop_interval=0)
    try:
        multipath = mpconfig.load(config_path) if config_path else mpconfig.MultipathConfig()
        overrides = mpconfig.parse_assignments(assignments)
        links = None
        if links_path:
            with open(links_path) as f:
                links = gather.links_from_ip_json(f.read())
        return await gather.before_setup(
            addresses, config, name=socket.gethostname(), iqn=iqn, management=management,
            storage=[s.strip() for s in storage.split(",") if s.strip()] if storage else None, links=links,
            multipath=multipath, overrides=overrides)
    except (ValueError, ConfigError) as e:
        raise XenError("VALUE_INVALID", str(e), advice="Correct the option named and run again.") from None
