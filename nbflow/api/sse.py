"""A run's events over HTTP: Server-Sent Events, or newline-delimited JSON.

SSE frames carry the Redis stream id as ``id:`` so that a browser's
``EventSource`` resumes by itself (it sends ``Last-Event-ID``); NDJSON lines
carry it in each object. Idle streams get a keep-alive (a comment, or a blank
line) so that proxies do not close them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from .reader import Item

SSE = "text/event-stream"
NDJSON = "application/x-ndjson"
KEEP_ALIVE_S = 15.0
SSE_KEEP_ALIVE = b": keep-alive\n\n"
NDJSON_KEEP_ALIVE = b"\n"
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse_frame(item: Item) -> str:
    return f"id: {item.id}\nevent: {item.type}\ndata: {item.json}\n\n"


def ndjson_line(item: Item) -> str:
    return item.json + "\n"


def negotiate(accept: str | None) -> str | None:
    """SSE or NDJSON when the client asks for a stream, else None (a JSON answer)."""
    wanted = [part.split(";")[0].strip().lower() for part in (accept or "").split(",")]
    for media in wanted:
        if media in (SSE, NDJSON):
            return media
    return None


async def encode(
    batches: AsyncGenerator[list[Item], None], media: str, stop: asyncio.Event
) -> AsyncIterator[bytes]:
    """The stream's bytes, until the run's terminal event or until ``stop`` is set (the
    server is shutting down: the client resumes elsewhere with Last-Event-ID)."""
    frame: Callable[[Item], str] = sse_frame if media == SSE else ndjson_line
    keep_alive = SSE_KEEP_ALIVE if media == SSE else NDJSON_KEEP_ALIVE
    async with contextlib.aclosing(batches):
        while not stop.is_set():
            batch = await _next_or_stop(batches, stop)
            if batch is None:
                return
            yield "".join(frame(item) for item in batch).encode() if batch else keep_alive


async def _next_or_stop(
    batches: AsyncGenerator[list[Item], None], stop: asyncio.Event
) -> list[Item] | None:
    following = asyncio.ensure_future(anext(batches, None))
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({following, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not following.done():
            following.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await following
    return following.result() if not following.cancelled() else None


class Stream(StreamingResponse):
    """A streamed response that gives its slot back (see limits.py) when it ends, however."""

    def __init__(
        self, content: AsyncIterator[bytes], *, release: Callable[[], None], **options: Any
    ) -> None:
        super().__init__(content, **options)
        self.release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.release()


def stream(
    batches: AsyncGenerator[list[Item], None],
    media: str,
    *,
    release: Callable[[], None],
    stop: asyncio.Event,
    headers: dict[str, str] | None = None,
) -> Stream:
    return Stream(
        encode(batches, media, stop),
        release=release,
        media_type=media,
        headers={**HEADERS, **(headers or {})},
    )


class EventStreamResponse(StreamingResponse):
    media_type = SSE
