"""What the CLI's commands share: the login options (CHAP from files or the environment, never from an
option value; initiator name; source address) and their resolution into a ``SessionConfig``, the
``iscsi://`` URL argument, byte sizes as option values, plain tables, and ``fail`` (message, exit code).

Every cli module takes these from here, never from another command's module."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import click

from ..errors import ConfigError
from ..initiator.session import SessionConfig
from ..initiator.url import IscsiUrl, parse_url
from ..iscsi.auth import ChapCredentials, ChapInitiator
from ..target.config import parse_size

F = TypeVar("F", bound=Callable[..., Any])

CHAP_SECRET_ENV = "SANPATH_CHAP_SECRET"
TARGET_CHAP_SECRET_ENV = "SANPATH_TARGET_CHAP_SECRET"

_CONNECTION_KEYS = ("chap_user", "chap_secret_file", "target_chap_user", "target_chap_secret_file",
                    "initiator_name", "source")


def fail(command: str, message: str, code: int = 1) -> NoReturn:
    click.echo(f"sanpath {command}: {message}", err=True)
    sys.exit(code)


# --- login options ---------------------------------------------------------------------------------


def connection_options(f: F) -> F:
    """CHAP, initiator name and source address: the same on every command that logs in."""
    options = [
        click.option("--chap-user", metavar="NAME", help="CHAP user name the initiator logs in as."),
        click.option("--chap-secret-file", type=click.Path(dir_okay=False), metavar="PATH",
                     help=f"File holding the CHAP secret (else ${CHAP_SECRET_ENV}). Never given on the "
                          "command line."),
        click.option("--target-chap-user", metavar="NAME",
                     help="Mutual CHAP: the name the target must answer with."),
        click.option("--target-chap-secret-file", type=click.Path(dir_okay=False), metavar="PATH",
                     help=f"Mutual CHAP: file holding the target's secret (else ${TARGET_CHAP_SECRET_ENV})."),
        click.option("--initiator-name", metavar="IQN",
                     help="Our iSCSI name (default $SANPATH_INITIATOR_NAME, else iqn.2026-11.org.sanpath:HOST)."),
        click.option("--source", metavar="ADDR", help="Local address to connect from (the storage NIC); with "
                     "--target, a comma-separated list, one per storage NIC."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@dataclass(frozen=True, slots=True)
class ConnectionOptions:
    chap_user: str | None
    chap_secret_file: str | None
    target_chap_user: str | None
    target_chap_secret_file: str | None
    initiator_name: str | None
    source: str | None

    @classmethod
    def pop(cls, kw: dict[str, Any]) -> ConnectionOptions:
        """Take the ``connection_options`` values out of a command's keyword arguments."""
        return cls(*(kw.pop(k) for k in _CONNECTION_KEYS))


def _read_secret(path: str | None, env: str, option: str) -> bytes | None:
    if path:
        try:
            with open(path, "rb") as f:
                secret = f.read().strip()  # as the target reads its secret_file
        except OSError as e:
            raise click.BadParameter(f"cannot read {path}: {e.strerror}", param_hint=option) from None
        if not secret:
            raise click.BadParameter(f"{path} is empty", param_hint=option)
        return secret
    value = os.environ.get(env)
    return value.encode() if value else None


def resolve_chap(opts: ConnectionOptions, url_user: str | None = None, url_password: str | None = None,
                 ) -> tuple[ChapCredentials | None, ChapCredentials | None]:
    """(initiator credentials, mutual credentials) from the URL, the secret files and the environment.
    Raises click.UsageError / BadParameter (exit 2) for an incomplete or inconsistent combination."""
    if url_user and opts.chap_user and url_user != opts.chap_user:
        raise click.UsageError(f"the URL names CHAP user {url_user!r} but --chap-user is {opts.chap_user!r}")
    user = url_user or opts.chap_user
    if opts.chap_secret_file and not user:
        raise click.UsageError("--chap-secret-file needs --chap-user (or user@ in the URL)")
    chap = mutual = None
    if user:
        secret = url_password.encode() if url_password else _read_secret(opts.chap_secret_file, CHAP_SECRET_ENV,
                                                                         "--chap-secret-file")
        if secret is None:
            raise click.UsageError(f"CHAP user {user!r} needs a secret: --chap-secret-file PATH, "
                                   f"${CHAP_SECRET_ENV}, or user%password@ in the URL")
        chap = ChapCredentials(user, secret)
    if opts.target_chap_secret_file and not opts.target_chap_user:
        raise click.UsageError("--target-chap-secret-file needs --target-chap-user")
    if opts.target_chap_user:
        if chap is None:
            raise click.UsageError("mutual CHAP (--target-chap-user) needs initiator CHAP (--chap-user) as well")
        secret = _read_secret(opts.target_chap_secret_file, TARGET_CHAP_SECRET_ENV, "--target-chap-secret-file")
        if secret is None:
            raise click.UsageError(f"--target-chap-user {opts.target_chap_user!r} needs a secret: "
                                   f"--target-chap-secret-file PATH or ${TARGET_CHAP_SECRET_ENV}")
        mutual = ChapCredentials(opts.target_chap_user, secret)
    if chap is not None:
        try:
            ChapInitiator(chap, target=mutual)  # checks secret lengths and that the two differ
        except ConfigError as e:
            raise click.UsageError(str(e)) from None
    return chap, mutual


def session_config(opts: ConnectionOptions, host: str, port: int, target: str | None,
                   url_user: str | None = None, url_password: str | None = None, **extra: Any) -> SessionConfig:
    chap, mutual = resolve_chap(opts, url_user, url_password)
    kwargs: dict[str, Any] = {"chap": chap, "mutual": mutual, "source": opts.source, **extra}
    if opts.initiator_name:
        kwargs["initiator_name"] = opts.initiator_name
    return SessionConfig(host=host, port=port, target=target, **kwargs)


# --- arguments, values and output ------------------------------------------------------------------


def iscsi_url(text: str, *, need_lun: bool) -> IscsiUrl:
    """The URL argument, parsed; a bad one is a usage error (exit 2)."""
    try:
        url = parse_url(text, need_lun=need_lun)
    except (ConfigError, ValueError) as e:
        raise click.BadParameter(str(e), param_hint="URL") from None
    if not url.target:
        raise click.BadParameter(f"{text!r} names no target; expected iscsi://[user[%password]@]host[:port]/<iqn>"
                                 + ("/<lun>" if need_lun else "[/<lun>]"), param_hint="URL")
    return url


class SizeType(click.ParamType):
    """A byte size such as 4KiB or 1GiB (an ``offset`` of plain 0 too)."""

    name = "SIZE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        if param is not None and param.name == "offset" and str(value).strip() == "0":
            return 0
        try:
            return parse_size(param.opts[0] if param else "size", value)
        except ConfigError as e:
            self.fail(str(e).split(": ", 1)[-1], param, ctx)


SIZE = SizeType()


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [list(headers)] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells)
