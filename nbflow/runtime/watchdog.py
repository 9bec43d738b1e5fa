"""What a worker watches for on a thread of its own: code that will not stop.

- The async runs' loop blocked past ``loop_blocked_s`` (a sync call inside async
  code): the blocking stack goes to the log and a warning event to each async run.
- A run asked to cancel whose code has not stopped after ``stuck_grace_s`` (code
  that never reaches a step boundary nor yields): it is recorded cancelled, and a
  worker process restarts itself, handing back its other runs, since only that
  ends the thread.
- A step abandoned by ``with_timeout`` that is still running ``stuck_grace_s`` after
  its run ended: the same restart.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .attempt import Active
    from .worker import Worker

log = logging.getLogger("nbflow.worker")
INTERVAL_S = 1.0
MAX_STACK_CHARS = 4_000


class Watchdog:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self._stop = threading.Event()
        self._reported = False  # the current blockage of the runs loop was reported
        self._thread = threading.Thread(target=self._loop, name="nbflow-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(INTERVAL_S):
            try:
                self.check()
            except Exception:
                log.exception("watchdog check failed")

    def check(self) -> None:
        self._check_loop()
        now = time.monotonic()
        grace_s = self.worker.options.stuck_grace_s
        for active in list(self.worker.active.values()):
            asked = active.cancel_asked_at
            if asked is not None and now - asked > grace_s and active.task is None:
                why = f"its code did not stop within {grace_s:g} s of the cancel (it never yields)"
                self._on_loop(self.worker.stuck(active, why))
        self._check_abandoned(now, grace_s)

    def _check_loop(self) -> None:
        worker = self.worker
        silent_s = worker.runs_loop.ping()
        if silent_s <= worker.options.loop_blocked_s:
            self._reported = False
            return
        if self._reported:
            return
        self._reported = True
        stack = worker.runs_loop.stack()[-MAX_STACK_CHARS:]
        log.warning(
            "the event loop of this worker's async runs has been blocked for %.1f s "
            "(a sync call inside async code?); it is here:\n%s",
            silent_s,
            stack,
        )
        message = (
            f"the worker's event loop for async runs was blocked for {silent_s:.1f} s: "
            "a sync call inside async code holds up every async run on this worker"
        )
        for active in _async_runs(worker):
            worker.warn(active, message, stack=stack)

    def _check_abandoned(self, now: float, grace_s: float) -> None:
        worker = self.worker
        for entry in list(worker.abandoned):  # (the loop's thread appends meanwhile)
            ended, run_id, threads = entry
            alive = any(t.is_alive() for t in threads)
            if alive and now - ended <= grace_s:
                continue
            worker.abandoned.remove(entry)
            if alive:
                why = (
                    f"a step of run {run_id} abandoned by its time-out was still running "
                    f"{grace_s:g} s after the run ended"
                )
                worker.loop.call_soon_threadsafe(worker.restart_for, why)

    def _on_loop(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self.worker.loop)


def _async_runs(worker: Worker) -> list[Active]:
    return [a for a in list(worker.active.values()) if a.is_async and a.holds_lease]
