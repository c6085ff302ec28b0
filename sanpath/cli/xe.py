"""``sanpath xe COMMAND key=value ...``: XenServer's xe forms of the SR workflow, with xe's argument syntax
(``key=value``, ``device-config:key=value``, ``other-config:key=value``, ``params=``, ``--minimal``) and its
output (records of ``name ( RO): value`` lines; error code and parameters), so that an admin's scripts
run unchanged against the daemon's API. sr-probe answers as xe does: the IQN and LUN stages are errors
96 and 107 carrying the XML, the last stage prints the SR list.

One departure: a secret is never taken on a command line (where ``ps`` shows it). ``device-config:
chappassword`` is refused; the CHAP secret comes from $SANPATH_CHAP_SECRET or
``device-config:chappassword_file=PATH`` (mutual CHAP: $SANPATH_TARGET_CHAP_SECRET or
``device-config:incoming_chappassword_file=PATH``)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import click

from ..mgmt.client import ApiClient, api_option, read_secret
from ..mgmt.errors import XenError
from .options import CHAP_SECRET_ENV, TARGET_CHAP_SECRET_ENV

SR_TYPES = ("lvmoiscsi", "iscsi")
# sm's own texts for the probe stages, which scripts match
PROBE_TEXT = {96: "The request is missing or has an incorrect target IQN parameter",
              107: "The SCSIid parameter is missing or incorrect"}


@dataclass
class Args:
    params: dict[str, str] = field(default_factory=dict)
    device_config: dict[str, str] = field(default_factory=dict)
    other_config: dict[str, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)

    @classmethod
    def parse(cls, words: tuple[str, ...]) -> Args:
        out = cls()
        for word in words:
            if word.startswith("--"):
                out.flags.add(word[2:])
                continue
            key, sep, value = word.partition("=")
            if not sep:
                raise XenError("VALUE_INVALID", f"{word!r}: xe arguments are key=value (or --minimal)", word)
            if key.startswith("device-config:"):
                out.device_config[key[14:]] = value
            elif key.startswith("other-config:"):
                out.other_config[key[13:]] = value
            else:
                out.params[key] = value
        return out

    def need(self, key: str) -> str:
        if not self.params.get(key):
            raise XenError("VALUE_INVALID", f"missing parameter {key}=", key, advice=f"Give {key}=VALUE.")
        return self.params[key]


# --- records ----------------------------------------------------------------------------------------------

Field = tuple[str, str, Callable[[dict[str, Any]], Any]]  # xe name, RO/RW/MRO/MRW, getter


def _map(d: dict[str, Any]) -> str:
    return "; ".join(f"{k}: {v}" for k, v in d.items())


def _bool(v: Any) -> str:
    return "true" if v else "false"


SR_FIELDS: list[Field] = [
    ("uuid", "RO", lambda s: s["uuid"]), ("name-label", "RW", lambda s: s["name_label"]),
    ("name-description", "RW", lambda s: s["other_config"].get("name_description", "")),
    ("host", "RO", lambda s: "<shared>" if s["shared"] else ""), ("type", "RO", lambda s: s["type"]),
    ("content-type", "RO", lambda s: "user"), ("shared", "RW", lambda s: _bool(s["shared"])),
    ("sm-config", "MRO", lambda s: _map({k: v for k, v in s["sm_config"].items() if isinstance(v, str)})),
    ("other-config", "MRW", lambda s: _map(s["other_config"])),
]
PBD_FIELDS: list[Field] = [
    ("uuid", "RO", lambda p: p["uuid"]), ("host-uuid", "RO", lambda p: p["host"]), ("sr-uuid", "RO", lambda p: p["sr"]),
    ("device-config", "MRO", lambda p: _map(p["device_config"])),
    ("currently-attached", "RO", lambda p: _bool(p["currently_attached"])),
    ("other-config", "MRW", lambda p: _map({k: v for k, v in p["other_config"].items() if isinstance(v, str)})),
]
def _host_other_config(h: dict[str, Any]) -> dict[str, str]:
    """As xe shows it: the host's other-config with its IQN and multipath handler."""
    return {**{k: v for k, v in h["other_config"].items() if isinstance(v, str)}, "iscsi_iqn": h["iqn"],
            "multipathhandle": h["multipath_handle"]}


HOST_FIELDS: list[Field] = [
    ("uuid", "RO", lambda h: h["uuid"]), ("name-label", "RW", lambda h: h["name_label"]),
    ("name-description", "RW", lambda h: h["other_config"].get("name_description", "")),
    ("enabled", "RO", lambda h: _bool(h["enabled"])), ("multipathing", "RW", lambda h: _bool(h["multipathing"])),
    ("other-config", "MRW", lambda h: _map(_host_other_config(h))),
]
DEFAULT_PARAMS = {"sr": 6, "pbd": 5, "host": 3}  # how many leading fields xe shows without params=


def render(records: list[dict[str, Any]], fields: list[Field], args: Args, default: int) -> str:
    wanted = args.params.get("params", "")
    if wanted == "all":
        chosen = fields
    elif wanted:
        names = wanted.split(",")
        unknown = [n for n in names if n not in {f[0] for f in fields}]
        if unknown:
            raise XenError("VALUE_INVALID", f"unknown parameter(s) {', '.join(unknown)}; known: "
                           + ", ".join(f[0] for f in fields), *unknown)
        chosen = [f for n in names for f in fields if f[0] == n]
    else:
        chosen = fields[:default]
    if "minimal" in args.flags:
        return ",".join(str(chosen[0][2](r)) for r in records) + "\n"
    out = []
    for r in records:
        labels = [f"{name} ( {mode})" for name, mode, _ in chosen]
        width = max(len(label) for label in labels)
        lines = [f"{label.ljust(width) if i == 0 else label.rjust(width)}: {get(r)}"
                 for i, (label, (_, _, get)) in enumerate(zip(labels, chosen, strict=True))]
        out.append("\n".join(lines) + "\n")
    return "\n".join(out) + ("\n" if out else "")


def _filter(records: list[dict[str, Any]], fields: list[Field], args: Args) -> list[dict[str, Any]]:
    """xe's ``field=value`` filters on list commands."""
    known = {name: get for name, _, get in fields}
    for key, value in args.params.items():
        if key == "params":
            continue
        if key not in known:
            raise XenError("VALUE_INVALID", f"unknown filter {key}=; known: " + ", ".join(known), key)
        records = [r for r in records if str(known[key](r)) == value]
    return records


# --- commands ---------------------------------------------------------------------------------------------

def _spec(args: Args) -> dict[str, Any]:
    sr_type = args.params.get("type", "lvmoiscsi")
    if sr_type not in SR_TYPES:
        raise XenError("VALUE_INVALID", f"type={sr_type}: sanpath makes iSCSI SRs (type=lvmoiscsi)", sr_type)
    dc = args.device_config
    for key in ("chappassword", "incoming_chappassword"):
        if key in dc:
            raise XenError("VALUE_INVALID", f"device-config:{key} would put a secret on the command line", key,
                           advice=f"Set ${CHAP_SECRET_ENV} (mutual: ${TARGET_CHAP_SECRET_ENV}) or give "
                                  f"device-config:{key}_file=PATH.")
    return {"target": dc.get("target", ""), "port": int(dc.get("port", "3260") or 3260),
            "targetIQN": dc.get("targetIQN", ""), "SCSIid": dc.get("SCSIid", ""),
            "chapuser": dc.get("chapuser", ""),
            "chappassword": read_secret(dc.get("chappassword_file"), CHAP_SECRET_ENV) if dc.get("chapuser") else "",
            "incoming_chapuser": dc.get("incoming_chapuser", ""),
            "incoming_chappassword": read_secret(dc.get("incoming_chappassword_file"), TARGET_CHAP_SECRET_ENV)
            if dc.get("incoming_chapuser") else ""}


def sr_probe(client: ApiClient, args: Args) -> str:
    result = client.call("POST", "/sr/probe", body=_spec(args))
    code = {"iqns": 96, "luns": 107}.get(result["stage"])
    if code is not None:  # as xe: the stage's XML inside SR_BACKEND_FAILURE_96 / _107
        raise _XeFailure(f"SR_BACKEND_FAILURE_{code}", ["", PROBE_TEXT[code], result["xml"]])
    return str(result["xml"])


def sr_create(client: ApiClient, args: Args) -> str:
    body = {**_spec(args), "name_label": args.need("name-label"),
            "multihomed": args.device_config.get("multihomed", "auto")}
    if args.params.get("shared", "true") != "true":
        raise XenError("VALUE_INVALID", "shared=false: every sanpath SR is shared by the pool's hosts", "shared")
    result = client.call("POST", "/srs", body=body)
    for warning in result["warnings"]:
        click.echo(f"warning: {warning}", err=True)
    return f"{result['uuid']}\n"


def _host(client: ApiClient, args: Args) -> dict[str, Any]:
    ref = args.params.get("uuid") or args.params.get("host") or args.params.get("name-label")
    return dict(client.call("GET", f"/hosts/{ref}") if ref else client.call("GET", "/self"))


def host_param_set(client: ApiClient, args: Args) -> str:
    host = _host(client, args)
    on = args.params.get("multipathing", args.other_config.get("multipathing"))
    handler = args.other_config.get("multipathhandle")
    if on is None and handler is None:
        raise XenError("VALUE_INVALID", "host-param-set here sets multipathing=true|false and "
                       "other-config:multipathhandle=dmp|rdac", advice="Give multipathing=true (or false).")
    if on is not None and on not in ("true", "false"):
        raise XenError("VALUE_INVALID", f"multipathing={on}: write true or false", on)
    if handler is not None and handler not in ("dmp", "rdac"):
        raise XenError("VALUE_INVALID", f"other-config:multipathhandle={handler}: write dmp or rdac", handler)
    client.call("POST", f"/hosts/{host['uuid']}/multipathing",
                body={"enabled": host["multipathing"] if on is None else on == "true", "handler": handler})
    return ""


def host_param_get(client: ApiClient, args: Args) -> str:
    host = _host(client, args)
    name = args.need("param-name")
    if name == "other-config":
        record = _host_other_config(host)
        key = args.params.get("param-key")
        if key:
            if key not in record:
                raise XenError("VALUE_INVALID", f"other-config has no key {key}", key)
            return f"{record[key]}\n"
        return _map(record) + "\n"
    fields = {f[0]: f[2] for f in HOST_FIELDS}
    if name not in fields:
        raise XenError("VALUE_INVALID", f"unknown parameter {name}; known: " + ", ".join(fields), name)
    return f"{fields[name](host)}\n"


def _listing(path: str, fields: list[Field], kind: str) -> Callable[[ApiClient, Args], str]:
    def command(client: ApiClient, args: Args) -> str:
        return render(_filter(list(client.call("GET", path)), fields, args), fields, args, DEFAULT_PARAMS[kind])
    return command


def _pbd_op(op: str) -> Callable[[ApiClient, Args], str]:
    def command(client: ApiClient, args: Args) -> str:
        body = {"force": True} if op == "unplug" and args.params.get("force") == "true" else None
        client.call("POST", f"/pbds/{args.need('uuid')}/{op}", body=body)
        return ""
    return command


def _enable(enabled: bool) -> Callable[[ApiClient, Args], str]:
    def command(client: ApiClient, args: Args) -> str:
        client.call("POST", f"/hosts/{_host(client, args)['uuid']}/enabled", body={"enabled": enabled})
        return ""
    return command


COMMANDS: dict[str, Callable[[ApiClient, Args], str]] = {
    "sr-probe": sr_probe, "sr-create": sr_create, "sr-list": _listing("/srs", SR_FIELDS, "sr"),
    "pbd-list": _listing("/pbds", PBD_FIELDS, "pbd"), "pbd-plug": _pbd_op("plug"), "pbd-unplug": _pbd_op("unplug"),
    "host-list": _listing("/hosts", HOST_FIELDS, "host"), "host-disable": _enable(False),
    "host-enable": _enable(True), "host-param-set": host_param_set, "host-param-get": host_param_get,
}


class _XeFailure(Exception):
    def __init__(self, code: str, params: list[str]) -> None:
        super().__init__(code)
        self.code = code
        self.params = params


def _xe_error(e: XenError) -> _XeFailure:
    """xe's rendering: SR_BACKEND_FAILURE_<code> with (empty, message, detail), else xapi's name."""
    if e.code is not None:
        return _XeFailure(f"SR_BACKEND_FAILURE_{e.code}", ["", e.message, ""])
    return _XeFailure(e.name, [*e.params, e.message] if e.params else [e.message])


@click.command("xe", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("command", type=click.Choice(sorted(COMMANDS)), metavar="COMMAND")
@click.argument("words", nargs=-1, type=click.UNPROCESSED)
@api_option
def xe(command: str, words: tuple[str, ...], api: str | None) -> None:
    """XenServer's xe forms: sr-probe, sr-create, sr-list, pbd-list, pbd-plug, pbd-unplug, host-list,
    host-disable, host-enable, host-param-set and host-param-get (multipathing), with xe's key=value
    arguments and its output."""
    try:
        try:
            out = COMMANDS[command](ApiClient(api), Args.parse(words))
        except XenError as e:
            raise _xe_error(e) from None
    except _XeFailure as f:
        click.echo(f"Error code: {f.code}", err=True)
        click.echo(f"Error parameters: {', '.join(f.params)}", err=True)
        sys.exit(1)
    click.echo(out, nl=False)
