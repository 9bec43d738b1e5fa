"""Bearer-token auth: with a token configured, every route but ``GET /healthz`` needs it.

API calls send ``Authorization: Bearer <token>``. A browser cannot send that
header when it opens a page, so the pages (``/docs``, ``/openapi.json``,
``/ui`` and their assets) also take the token once as ``?token=``: the answer
sets a cookie that stands for it on those pages only, and sends the browser on
to the page without it. The cookie never opens an API route (those still need
the header), so no other site can ride it to start or cancel a run.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from urllib.parse import parse_qsl, urlencode

from starlette.datastructures import Headers
from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import constants as c
from .errors import error_response
from .models import ErrorBody

RESPONSES: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorBody, "description": "missing or wrong bearer token"}
}
OPEN_PATHS = frozenset({"/healthz"})
PAGES = ("/docs", "/openapi.json", "/ui")  # and what is under them
COOKIE = "nbflow-api-page"
SCHEME = "HTTPBearer"


def configured_token(token: str | None = None) -> str | None:
    """``token``, else ``NBFLOW_API_TOKEN``; an empty one means no auth."""
    value = token if token is not None else os.environ.get(c.ENV_API_TOKEN, "")
    return value or None


class TokenAuth:
    def __init__(self, app: ASGIApp, *, token: str) -> None:
        self.app = app
        self.token = token.encode()
        self.cookie = page_cookie(token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        given = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"))).get("token")
        if is_page(scope) and given is not None and _same(given.encode(), self.token):
            await self._let_in(scope)(scope, receive, send)  # on, without it in the address
            return
        if self._bearer(headers) or (is_page(scope) and self._page_cookie(headers)):
            await self.app(scope, receive, send)
            return
        refused = error_response(
            401,
            "unauthorized",
            "missing or wrong bearer token (Authorization: Bearer <token>; "
            "pages take ?token=<token> once)",
            headers={"WWW-Authenticate": "Bearer"},
        )
        await refused(scope, receive, send)

    def _bearer(self, headers: Headers) -> bool:
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and _same(credentials.strip().encode(), self.token)

    def _page_cookie(self, headers: Headers) -> bool:
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE and _same(value.encode(), self.cookie.encode()):
                return True
        return False

    def _let_in(self, scope: Scope) -> RedirectResponse:
        """On to the page without ``?token=``, with the cookie; /ui's script keeps the
        token (from the fragment, which no server sees) for its API calls."""
        query = [(k, v) for k, v in parse_qsl(scope["query_string"].decode()) if k != "token"]
        target = (
            scope.get("root_path", "") + scope["path"] + (f"?{urlencode(query)}" if query else "")
        )
        if scope["path"].startswith("/ui"):
            target += "#" + urlencode({"token": self.token.decode()})
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE,
            self.cookie,
            path="/",
            httponly=True,
            samesite="strict",
            secure=scope.get("scheme") == "https",
        )
        return response


def page_cookie(token: str) -> str:
    """What the cookie holds: derived from the token, so that it does not reveal it."""
    return hmac.new(token.encode(), b"nbflow page cookie", hashlib.sha256).hexdigest()


def is_page(scope: Scope) -> bool:
    path = scope["path"]
    pages = any(path == p or path.startswith(p + "/") for p in PAGES)
    return pages and scope["method"] in ("GET", "HEAD")


def _same(given: bytes, expected: bytes) -> bool:
    return hmac.compare_digest(given, expected)
