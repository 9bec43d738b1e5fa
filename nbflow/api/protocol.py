"""uvicorn's HTTP/1.1 protocol (h11), with a time limit on reading a request's headers.

uvicorn times out idle keep-alive connections only once a response has been
sent, and any byte received resets that timer: a client that connects and
sends nothing, or a header a byte at a time, holds its connection (and a file
handle) for ever. Here a request's headers must be complete within
``header_timeout_s`` of the connection, or of the previous response; the
connection is closed otherwise. Bodies are bounded by size elsewhere (body.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .. import constants as c


class HeaderTimeoutProtocol(H11Protocol):
    header_timeout_s = c.API_HEADER_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._headers_due: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._expect_headers()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the request's headers are in
            self._headers_in()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._expect_headers()  # the next request on this connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._headers_in()
        super().connection_lost(exc)

    def _expect_headers(self) -> None:
        self._headers_in()
        self._headers_due = self.loop.call_later(self.header_timeout_s, self._too_slow)

    def _headers_in(self) -> None:
        if self._headers_due is not None:
            self._headers_due.cancel()
            self._headers_due = None

    def _too_slow(self) -> None:
        self._headers_due = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def with_header_timeout(header_timeout_s: float) -> type[HeaderTimeoutProtocol]:
    """The protocol class for ``uvicorn.Config(http=...)``."""
    return type(
        "HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout_s": header_timeout_s}
    )
