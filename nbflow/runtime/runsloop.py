"""The event loop where a worker's async runs execute, on a thread of its own.

Kept apart from the loop that writes events, claims and sweeps: a sync step
called from async code blocks this loop while it waits for its commit, which the
other loop makes, so nothing waits on itself; and code that blocks this loop holds
up only other async runs, which the watchdog notices through ``ping``.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import traceback
from collections.abc import Callable, Coroutine
from typing import Any


class RunsLoop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.answered = time.monotonic()  # when the loop last ran a ping
        self._thread = threading.Thread(target=self._main, name="nbflow-async-runs", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def start(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a task of this loop (from any thread)."""
        asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(callback, *args)

    def ping(self) -> float:
        """Seconds since the loop last answered, and ask it again (from another thread)."""
        silent_s = time.monotonic() - self.answered
        self.call_soon(self._answer)
        return silent_s

    def _answer(self) -> None:
        self.answered = time.monotonic()

    def stack(self) -> str:
        """Where the loop's thread is now: the code that blocks it."""
        frame = sys._current_frames().get(self._thread.ident or -1)
        return "".join(traceback.format_stack(frame)) if frame is not None else ""

    def stop(self) -> None:
        """Stop the loop; tasks still blocked in it are abandoned with the thread."""
        self.call_soon(self.loop.stop)
        self._thread.join(2.0)
        if not self._thread.is_alive():
            self.loop.close()
