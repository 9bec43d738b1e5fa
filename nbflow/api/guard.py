"""Without a token, only this machine's own clients are served, browsers included.

A server without a token trusts whoever reaches its loopback address. A web
page in the user's browser reaches it too: by DNS rebinding (a name of the
attacker's that resolves to 127.0.0.1, sent as ``Host``) or by a cross-site
request (a form or ``fetch`` that carries an ``Origin`` of its own). So with no
token, a request is refused with 403 unless its ``Host`` is a loopback name
and its ``Origin``, if any, is the server's own. With a token, a browser
cannot send it cross-site (it is a header), so neither rule is needed.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import error_response


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class LoopbackOnly:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = headers.get("host")
        problem = host_problem(host) or origin_problem(headers.get("origin"), host or "")
        if problem is None:
            await self.app(scope, receive, send)
            return
        type_, message = problem
        await error_response(403, type_, message)(scope, receive, send)


def host_problem(host: str | None) -> tuple[str, str] | None:
    if host is None:
        return "host_not_allowed", "a request needs a Host header"
    if is_loopback(_hostname(host)):
        return None
    return (
        "host_not_allowed",
        f"Host {host!r} is not a loopback name: without a token this server answers only "
        "localhost, 127.0.0.1 or [::1] (set NBFLOW_API_TOKEN to serve other names)",
    )


def origin_problem(origin: str | None, host: str) -> tuple[str, str] | None:
    if origin is None:
        return None  # not sent by a browser, or sent by one to its own origin with GET
    parts = urlsplit(origin)
    if parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower():
        return None
    return (
        "cross_origin",
        f"requests from origin {origin!r} are refused: without a token this server answers "
        "only pages of its own origin (set NBFLOW_API_TOKEN to serve others)",
    )


def _hostname(host: str) -> str:
    if host.startswith("["):  # [::1]:8765
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
