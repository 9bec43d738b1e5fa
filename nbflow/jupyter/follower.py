"""Following one run for its live views: the log folded as it grows, new events told in ticks.

A ``Follower`` reads the run's log from the first event (full replay, then live)
on a background thread, folds it with ``RunState.apply`` (for the HTML snapshot
and the saved output) and, at most ten times a second, hands its listeners the
events that arrived since the last tick. The notebook widget folds those events
with the viewer's own fold; a newly drawn view asks for a ``replay`` of the ones
told so far. While a view elsewhere draws the run from the server (``paused``),
the follower stops reading the log and only watches for the run's end.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError

from .. import _events as ev
from .._fold import RunState
from .._policies import Backoff
from . import display as dsp

TICK_S = 0.1  # at most ten updates a second
MAX_KEPT_EVENTS = 1_000_000  # a replay holds at most this many (a run's log is capped there)
STATUS_CHECK_S = 2.0
# A view whose runtime is away retries after RETRY_S, backing off to RETRY_MAX_S.
RETRY_S = 1.0
RETRY_MAX_S = 10.0

Tick = dict[str, Any]


class Follower:
    """Folds one run's log as it grows and tells listeners the new events, throttled."""

    def __init__(self, run: Any, *, tick_s: float = TICK_S) -> None:
        self.run = run
        self.mode = dsp.mode_of(run)
        self.state = RunState(run.id)
        self.tick_s = tick_s
        self.events: list[ev.Event] = []  # as front ends get them: JSON values only
        self.lock = threading.RLock()
        self.finished = threading.Event()
        self.paused: Callable[[], bool] = lambda: False
        self._listeners: list[Callable[[Tick], None]] = []
        self._told = 0  # events handed to listeners so far
        self._index = 0
        self._quiet_since = time.monotonic()
        self._thread = threading.Thread(
            target=self._loop, name=f"nbflow-view-{run.id}", daemon=True
        )

    @property
    def event_ids(self) -> list[str]:
        return [e.get("id", "") for e in self.events]

    def listen(self, listener: Callable[[Tick], None]) -> None:
        self._listeners.append(listener)

    def start(self) -> None:
        self._thread.start()

    # --- reading the log ----------------------------------------------------
    def catch_up(self) -> None:
        """Fold everything the log holds now, without telling listeners: a view drawn
        later gets it in its replay."""
        with self.lock:
            self._apply(self._read())
            self._told = len(self.events)

    def _read(self) -> list[ev.Event]:
        if self.mode == "local":
            events: list[ev.Event] = self.run.sink.events
            new = events[self._index :]
            self._index += len(new)
            return new
        return list(self.run.events(after=self.state.last_id, follow=False))

    def _apply(self, events: list[ev.Event]) -> None:
        for event in events:
            self.state.apply(event)
            if len(self.events) < MAX_KEPT_EVENTS:
                self.events.append(plain(event))
        if events:
            self._quiet_since = time.monotonic()

    def step(self) -> bool:
        """Fold what is new and tell listeners (the last time with ``final``); True once ended."""
        with self.lock:
            if self.finished.is_set():
                return True
            self._apply(self._read())
            done = self.state.done or self._expired()
            self._flush(final=done)
            if done:
                self.finished.set()
            return done

    def _loop(self) -> None:
        retry = Backoff(initial_s=RETRY_S, max_s=RETRY_MAX_S)
        try:
            while True:
                try:
                    if self._watch():
                        return
                except RedisError:  # the runtime is away for a moment: keep the view, retry
                    time.sleep(retry.next_delay())
                    continue
                retry.reset()
        finally:
            self.finished.set()

    def _watch(self) -> bool:
        if not self.paused():
            done = self.step()
            time.sleep(0 if done else self.tick_s)
            return done
        if self._ended():
            return self.step()
        time.sleep(STATUS_CHECK_S)
        return False

    def _ended(self) -> bool:
        try:
            return self.run.status() in ("succeeded", "failed", "cancelled")
        except KeyError:
            return True

    def _expired(self) -> bool:
        # A log whose terminal event was trimmed, or a run that expired: stop following.
        if self.mode == "local" or time.monotonic() - self._quiet_since < STATUS_CHECK_S:
            return False
        return self._ended()

    # --- telling listeners ----------------------------------------------------
    def _flush(self, *, final: bool) -> None:
        new = self.events[self._told :]
        if not (new or final):
            return
        self._told = len(self.events)
        tick: Tick = {"events": new, "final": final}
        for listener in self._listeners:
            listener(tick)

    def replay(self) -> list[ev.Event]:
        """The events told so far (call holding ``lock``): what a newly drawn view folds
        first; the ones after them come in the next tick."""
        return self.events[: self._told]

    def data(self) -> dict[str, Any]:
        with self.lock:
            return dsp.run_data(self.state, mode=self.mode, workflow=dsp.workflow_of(self.run))

    def bundle(self) -> dict[str, Any]:
        with self.lock:
            return dsp.bundle(self.data(), traceback=self.state.traceback)


def plain(event: ev.Event) -> ev.Event:
    """The event as JSON carries it (an in-process run's events may hold any object)."""
    try:
        json.dumps(event)
    except (TypeError, ValueError):
        return dict(json.loads(json.dumps(event, default=repr)))
    return event
