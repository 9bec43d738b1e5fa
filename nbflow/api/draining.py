"""uvicorn's server, telling the app the moment a shutdown signal arrives.

uvicorn stops accepting connections on SIGTERM, waits up to its graceful time-out
for the requests in flight, then cancels them. A request waiting for a run would
be cut with an error; told at once, it answers 202 with the run's id instead (the
run goes on without this process), and the shutdown need not wait for it.
"""

from __future__ import annotations

import asyncio
import socket
from types import FrameType

import uvicorn


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, draining: asyncio.Event) -> None:
        super().__init__(config)
        self.draining = draining
        self.loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.loop is not None:  # in a signal handler: let the loop set it, and wake it
            self.loop.call_soon_threadsafe(self.draining.set)
        super().handle_exit(sig, frame)
