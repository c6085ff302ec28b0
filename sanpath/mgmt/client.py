"""The CLI's side of the API: an httpx client over the daemon's unix socket (or HTTPS with a bearer
token), XenServer-style errors raised from its answers, and printing as a table or JSON. The click
commands in ``sanpath/cli`` stay thin over this."""

from __future__ import annotations

import json
import os
import ssl
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

import click
import httpx

from . import places
from .errors import XenError

API_ENV = "SANPATH_API"
TOKEN_ENV = "SANPATH_API_TOKEN"
CA_ENV = "SANPATH_API_CA"
EXIT_BAD_INPUT = {400, 404}


class ApiClient:
    def __init__(self, api: str | None = None, *, timeout: float = 300.0) -> None:
        self.api = api or os.environ.get(API_ENV) or places.default_api()
        headers = {}
        try:
            if self.api.startswith("unix:"):
                transport = httpx.HTTPTransport(uds=self.api[5:])
                self.client = httpx.Client(transport=transport, base_url="http://sanpath", timeout=timeout)
            elif self.api.startswith("https://"):
                if token := os.environ.get(TOKEN_ENV):
                    headers["Authorization"] = f"Bearer {token}"
                ca = os.environ.get(CA_ENV)
                self.client = httpx.Client(base_url=self.api, headers=headers, timeout=timeout,
                                           verify=ssl.create_default_context(cafile=ca) if ca else True)
            else:
                raise XenError("VALUE_INVALID", f"--api {self.api!r}: write unix:PATH or https://HOST:PORT (TCP "
                               "is offered only with TLS)", self.api)
        except (httpx.InvalidURL, OSError, ssl.SSLError) as e:
            raise XenError("VALUE_INVALID", f"--api {self.api}: {e}", self.api,
                           advice=f"Check --api (or ${API_ENV}) and ${CA_ENV}.") from None

    def call(self, method: str, path: str, *, body: dict[str, Any] | None = None,
             params: dict[str, Any] | None = None) -> Any:
        with self._errors(method, path):
            r = self.client.request(method, path, json=body, params=_given(params))
        return self._answer(r, path)

    def lines(self, method: str, path: str, *, body: dict[str, Any] | None = None,
              params: dict[str, Any] | None = None) -> Iterator[str]:
        """A streamed answer, line by line, as it comes (no read timeout: the daemon sends as it works)."""
        with self._errors(method, path), self.client.stream(method, path, json=body, params=_given(params),
                                                            timeout=httpx.Timeout(30.0, read=None)) as r:
            if r.status_code >= 400:
                r.read()
                self._answer(r, path)
            yield from r.iter_lines()

    def events(self, path: str, params: dict[str, Any] | None = None) -> Iterator[tuple[str, Any]]:
        """Server-sent events: (event, data parsed as JSON) for each one."""
        event, data = "message", list[str]()
        for line in self.lines("GET", path, params=params):
            if not line:
                if data:
                    yield event, json.loads("\n".join(data))
                event, data = "message", list[str]()
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())

    @contextmanager
    def _errors(self, method: str, path: str) -> Iterator[None]:
        try:
            yield
        except httpx.TimeoutException:
            raise XenError("TIMEOUT", f"the host daemon at {self.api} did not answer {method} {path} in time",
                           self.api, advice="The request may still be carried out: look with sanpath pbd list "
                           "before trying again.") from None
        except httpx.TransportError as e:
            raise XenError("ISCSIQueryDaemon", f"cannot reach the host daemon at {self.api}: {e}", self.api,
                           advice="Start it (sanpath host serve), or point --api / $SANPATH_API at it.") from None

    def _answer(self, r: httpx.Response, path: str) -> Any:
        try:
            data = r.json()
        except ValueError:
            data = None
        if r.status_code >= 400 or data is None:
            if isinstance(data, dict) and "error" in data:
                raise XenError.from_json(data)
            raise XenError("MultipathGenericFailure", f"HTTP {r.status_code} from {self.api}{path}: {r.text[:300]}")
        return data


def _given(params: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (params or {}).items() if v is not None}


def fail(command: str, e: XenError) -> NoReturn:
    code = f" ({e.code})" if e.code else ""
    click.echo(f"sanpath {command}: {e.name}{code}: {e.message}", err=True)
    if e.advice:
        click.echo(f"  what to do: {e.advice}", err=True)
    sys.exit(2 if e.kind.http in EXIT_BAD_INPUT else 1)


def run(command: str, work: Callable[[], None]) -> None:
    try:
        work()
    except XenError as e:
        fail(command, e)


def emit(data: Any, fmt: str, columns: Sequence[tuple[str, Callable[[dict[str, Any]], Any]]] = ()) -> None:
    """JSON as is, or a table of ``columns`` (header, getter) over a list (or one record)."""
    if fmt == "json":
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    rows = data if isinstance(data, list) else [data]
    table = [[h for h, _ in columns]] + [[_cell(get(r)) for _, get in columns] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "-"
    return str(value)


def api_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--api", metavar="unix:PATH|https://HOST:PORT", envvar=API_ENV,
                        help=f"The host daemon's API (default {places.default_api()}; or ${API_ENV}).")(f)


def format_option(*choices: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option("--format", "fmt", type=click.Choice(list(choices)), default=choices[0], show_default=True)


def read_secret(path: str | None, env: str) -> str:
    """A CHAP secret from a file (never an option value) or the environment; "" when neither is given."""
    if path:
        try:
            with open(path) as f:
                return f.read().strip()
        except OSError as e:
            raise XenError("VALUE_INVALID", f"cannot read {path}: {e.strerror}", path) from None
        except UnicodeDecodeError:
            raise XenError("VALUE_INVALID", f"{path} is not text; a CHAP secret is a text line", path) from None
    return os.environ.get(env, "")
