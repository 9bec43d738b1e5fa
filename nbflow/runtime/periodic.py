"""A task a worker repeats on a daemon thread of its own (lease renewal, the watchdog),
so that it goes on while run code holds the event loop or the GIL-free parts of a thread."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("nbflow.worker")
STOP_JOIN_S = 5.0  # how long stop() waits for a tick under way


class PeriodicThread:
    """Calls ``tick`` every ``interval_s`` (the first time at once when ``now``) until
    ``stop``; a tick that raises is logged, and the next one comes on time."""

    def __init__(
        self, name: str, interval_s: float, tick: Callable[[], None], *, now: bool = False
    ) -> None:
        self.name = name
        self.interval_s = interval_s
        self.tick = tick
        self.now = now
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=STOP_JOIN_S)

    def _loop(self) -> None:
        if self.now:
            self._tick()
        while not self._stop.wait(self.interval_s):
            self._tick()

    def _tick(self) -> None:
        try:
            self.tick()
        except Exception as error:
            debug = log.isEnabledFor(logging.DEBUG)
            log.warning("%s: a tick failed: %s", self.name, error, exc_info=debug)
