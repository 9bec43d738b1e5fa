"""The threads that run a worker's runs, and that read its work stream.

A worker has one thread per run slot. On a standalone server the idle threads
take turns reading the work stream (one of them blocks in the read at a time),
and the thread whose read returns a run starts that run itself: the run's code
starts on the thread that woke up, with no hand-off to another thread and no
trip through the event loop. Runs claimed in any other way (by the sweeper, or
on Redis Cluster by the event loop) are handed to the threads with ``put``.

The reading passes on to the next idle thread without waiting for the run. A
read answered at once (work was queued) wakes the next reader, and a thread for
each other run it claimed, at once. A read that waited for its one run found the
worker quiet: it passes the reading on through ``soon`` (the worker's event
loop), because a reader woken at once would take the interpreter from the run
at its first system call, before its first line, to send its own read (about a
tenth of a run's start on a quiet worker). The loop gets the interpreter when
the run blocks or ends, or after one switch interval (5 ms) of a run that
computes, so reading pauses at most that long, and only on a quiet worker: on
a busy one (2 workers on 2 cores) that pause cost 7% of the runs per second.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from .claims import Claim

log = logging.getLogger("nbflow.worker")
Read = Callable[[], list[Claim]]  # blocks a bounded time; the runs it claimed
Soon = Callable[[Callable[[], None]], None]  # runs a callback soon on another thread
QUIET_READ_S = 0.002  # a read that waited this long for its one run found the worker quiet


class RunThreads:
    def __init__(
        self, n: int, serve: Callable[[Claim], None], read: Read | None, soon: Soon
    ) -> None:
        self._serve = serve
        self._read = read  # None: these threads never read (Redis Cluster)
        self._soon = soon
        self._ready: deque[Claim] = deque()
        self._cond = threading.Condition()
        self._reading = False  # one thread at a time reads
        self._stopped = False
        self._threads = [
            threading.Thread(target=self._loop, name=f"nbflow-run-{i}", daemon=True)
            for i in range(n)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def put(self, claims: list[Claim]) -> None:
        """Serve runs claimed elsewhere (from any thread)."""
        if claims:
            with self._cond:
                self._ready.extend(claims)
                self._cond.notify(len(claims))

    def stop_reading(self) -> None:
        """No more reads (drain); claims already here are still served."""
        with self._cond:
            self._read = None
            self._cond.notify_all()

    def wait_read(self, timeout_s: float) -> bool:
        """Wait until no read is in flight (after stop_reading: none will be again)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._reading, timeout_s)

    def stop(self) -> None:
        """Idle threads exit; runs still executing are left to finish or be abandoned."""
        with self._cond:
            self._stopped = True
            self._read = None
            self._ready.clear()
            self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            claim = self._next()
            if claim is None:
                return
            try:
                self._serve(claim)
            except Exception:
                log.exception("run %s: internal error", claim.run_id)

    def _next(self) -> Claim | None:
        """A run to serve: a ready one, or one this thread reads. None: stopped."""
        while True:
            with self._cond:
                while not self._stopped and not self._ready and (self._reading or not self._read):
                    self._cond.wait()
                if self._stopped:
                    return None
                if self._ready:
                    return self._ready.popleft()
                read, self._reading = self._read, True
            claims: list[Claim] = []
            started = time.monotonic()
            try:
                assert read is not None
                claims = read()
            except Exception:
                log.exception("reading the work stream failed")
            finally:
                quiet = len(claims) == 1 and time.monotonic() - started >= QUIET_READ_S
                with self._cond:
                    self._reading = False
                    self._ready.extend(claims[1:])
                    if self._read is None:  # wake wait_read
                        self._cond.notify_all()
                    elif not quiet:  # the next reader, and a thread for each run left
                        self._cond.notify(len(claims))
            if quiet:
                self._soon(self._pass_reading)
            if claims:
                return claims[0]

    def _pass_reading(self) -> None:
        with self._cond:
            self._cond.notify()
