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
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .attempt import Active
    from .options import WorkerOptions
    from .runsloop import RunsLoop

log = logging.getLogger("nbflow.worker")
INTERVAL_S = 1.0
MAX_STACK_CHARS = 4_000
# (ended at, run id, threads): steps abandoned by with_timeout, still running
Abandoned = tuple[float, str, list[threading.Thread]]


@dataclass
class Watchdog:
    """Checks a worker's attempts (``active``) and its ``runs_loop``; ``check`` runs on
    a thread of its own. What it finds goes to the worker through the callbacks: ``stuck``
    and ``restart`` are run on ``loop``, ``warn`` from this thread."""

    active: Mapping[str, Active]
    abandoned: list[Abandoned]
    runs_loop: RunsLoop
    options: WorkerOptions
    loop: asyncio.AbstractEventLoop
    stuck: Callable[[Active, str], Coroutine[Any, Any, None]]
    restart: Callable[[str], None]
    warn: Callable[..., None]
    _reported: bool = field(default=False, init=False)  # the current blockage was reported

    def check(self) -> None:
        self._check_loop()
        now = time.monotonic()
        grace_s = self.options.stuck_grace_s
        for active in list(self.active.values()):
            asked = active.cancel_asked_at
            if asked is not None and now - asked > grace_s and active.task is None:
                why = f"its code did not stop within {grace_s:g} s of the cancel (it never yields)"
                asyncio.run_coroutine_threadsafe(self.stuck(active, why), self.loop)
        self._check_abandoned(now, grace_s)

    def _check_loop(self) -> None:
        silent_s = self.runs_loop.ping()
        if silent_s <= self.options.loop_blocked_s:
            self._reported = False
            return
        if self._reported:
            return
        self._reported = True
        stack = self.runs_loop.stack()[-MAX_STACK_CHARS:]
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
        for active in list(self.active.values()):
            if active.is_async and active.holds_lease:
                self.warn(active, message, stack=stack)

    def _check_abandoned(self, now: float, grace_s: float) -> None:
        for entry in list(self.abandoned):  # (the loop's thread appends meanwhile)
            ended, run_id, threads = entry
            alive = any(t.is_alive() for t in threads)
            if alive and now - ended <= grace_s:
                continue
            self.abandoned.remove(entry)
            if alive:
                why = (
                    f"a step of run {run_id} abandoned by its time-out was still running "
                    f"{grace_s:g} s after the run ended"
                )
                self.loop.call_soon_threadsafe(self.restart, why)
