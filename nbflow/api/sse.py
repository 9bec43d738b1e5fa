"""A run's events over HTTP: Server-Sent Events, or newline-delimited JSON.

SSE frames carry the Redis stream id as ``id:`` so that a browser's
``EventSource`` resumes by itself (it sends ``Last-Event-ID``); NDJSON lines
carry it in each object. Idle streams get a keep-alive (a comment, or a blank
line) so that proxies do not close them.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable

from fastapi.responses import StreamingResponse

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


async def encode(batches: AsyncGenerator[list[Item], None], media: str) -> AsyncIterator[bytes]:
    frame: Callable[[Item], str] = sse_frame if media == SSE else ndjson_line
    keep_alive = SSE_KEEP_ALIVE if media == SSE else NDJSON_KEEP_ALIVE
    async with contextlib.aclosing(batches):
        async for batch in batches:
            yield "".join(frame(item) for item in batch).encode() if batch else keep_alive


def stream(
    batches: AsyncGenerator[list[Item], None], media: str, *, headers: dict[str, str] | None = None
) -> StreamingResponse:
    return StreamingResponse(
        encode(batches, media), media_type=media, headers={**HEADERS, **(headers or {})}
    )


class EventStreamResponse(StreamingResponse):
    media_type = SSE
