"""Request bodies, before any route sees them: at most a size, JSON, and only JSON numbers.

The body is read here (up to the limit) and handed on whole, so a chunked
upload without ``Content-Length`` is held to the same limit. A body must say
it is JSON (415 otherwise): a cross-site form cannot, so it cannot start a run.
It must then be JSON as RFC 8259 has it (422 naming the field otherwise):
UTF-8, and no ``NaN``, ``Infinity`` or number too large for a double
(``1e400``), which Python's parser would let through as non-finite floats.
"""

from __future__ import annotations

import json
import math
from collections import deque
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_response


class BadBody(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class RequestBody:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
            await self._too_large(scope, receive, send)
            return
        first = await self._read(receive)
        if first is None:
            await self._too_large(scope, receive, send)
            return
        body = first.get("body", b"") if first["type"] == "http.request" else b""
        if body and not is_json(headers.get("content-type")):
            await self._not_json(scope, receive, send)
            return
        try:
            if body:
                parse(body)
        except BadBody as bad:
            fields = [{"field": bad.field, "message": bad.message}]
            reply = error_response(422, "invalid_input", str(bad), fields=fields)
            await reply(scope, receive, send)
            return
        await self.app(scope, _replay(first, receive), send)

    async def _read(self, receive: Receive) -> Message | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return message  # the client left; let the app see it
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body_bytes:
                return None
            if not message.get("more_body", False):
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413, "body_too_large", f"request body is over {self.max_body_bytes} bytes"
        )
        await response(scope, receive, send)

    async def _not_json(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            415,
            "unsupported_media_type",
            "a request body must be JSON, sent with Content-Type: application/json",
        )
        await response(scope, receive, send)


def is_json(content_type: str | None) -> bool:
    """``application/json``, or ``application/<anything>+json``, with any parameters."""
    media = (content_type or "").split(";")[0].strip().lower()
    kind, _, subtype = media.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


def parse(raw: bytes) -> Any:
    """The JSON value of ``raw``; BadBody names what is wrong, and where."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadBody("body", f"not valid JSON: not UTF-8 (at byte {error.start})") from None
    try:
        value = json.loads(text, parse_constant=_NonFinite)
    except json.JSONDecodeError as error:
        raise BadBody("body", f"not valid JSON: {error.msg} at character {error.pos}") from None
    except RecursionError:
        raise BadBody("body", "not accepted: JSON nested too deeply") from None
    where = non_finite(value)
    if where is not None:
        raise BadBody(
            where,
            "not a JSON number: NaN, Infinity and numbers beyond a double's range are refused",
        )
    return value


class _NonFinite:
    """What the parser made of ``NaN`` or ``Infinity``: found again (with its field) below."""

    def __init__(self, token: str) -> None:
        self.token = token


def non_finite(value: Any) -> str | None:
    """The field path (``input.x.0``) of a non-finite number in ``value`` (the shallowest
    first), or None."""
    todo: deque[tuple[tuple[str, ...], Any]] = deque([((), value)])
    while todo:
        path, item = todo.popleft()
        if isinstance(item, _NonFinite) or (isinstance(item, float) and not math.isfinite(item)):
            return ".".join(path) or "body"
        if isinstance(item, dict):
            todo.extend(((*path, str(k)), v) for k, v in item.items())
        elif isinstance(item, list):
            todo.extend(((*path, str(n)), v) for n, v in enumerate(item))
    return None


def _replay(first: Message, receive: Receive) -> Receive:
    pending = [first]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay
