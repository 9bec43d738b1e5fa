"""Following one run for its live views: the log folded as it grows, changes told in ticks.

A ``Follower`` reads the run's log from the first event (full replay, then live)
on a background thread, folds it with ``RunState.apply`` and, at most ten times
a second, tells its listeners what changed: a small summary, the spans that
changed since the last tick (parents first) and the new output. A run with
10,000 spans thus costs a view a few rows per tick.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError

from .. import _events as ev
from .._fold import RunState
from .._policies import Backoff
from .._spanstate import start_order
from .._waitinfo import describe_wait, field_kind
from . import display as dsp

TICK_S = 0.1  # at most ten updates a second
EMITTED_RESYNC_CHARS = 200_000
MAX_RECORDED_IDS = 1_000_000
STATUS_CHECK_S = 2.0
# A view whose runtime is away retries after RETRY_S, backing off to RETRY_MAX_S.
RETRY_S = 1.0
RETRY_MAX_S = 10.0
MAX_WARNINGS = 5  # the latest ones, in a view's summary

Tick = dict[str, Any]


class Follower:
    """Folds one run's log as it grows and tells listeners what changed, throttled."""

    def __init__(self, run: Any, *, tick_s: float = TICK_S) -> None:
        self.run = run
        self.mode = dsp.mode_of(run)
        self.state = RunState(run.id)
        self.tick_s = tick_s
        self.event_ids: list[str] = []
        self.lock = threading.RLock()
        self.finished = threading.Event()
        self._listeners: list[Callable[[Tick], None]] = []
        self._dirty: set[str] = set()
        self._emitted: list[str] = []
        self._changed = False
        self._index = 0
        self._quiet_since = time.monotonic()
        self._thread = threading.Thread(
            target=self._loop, name=f"nbflow-view-{run.id}", daemon=True
        )

    def listen(self, listener: Callable[[Tick], None]) -> None:
        self._listeners.append(listener)

    def start(self) -> None:
        self._thread.start()

    # --- reading the log ----------------------------------------------------
    def catch_up(self) -> None:
        """Fold everything the log holds now (the replay), without telling listeners."""
        with self.lock:
            self._apply(self._read())

    def _read(self) -> list[ev.Event]:
        if self.mode == "local":
            events: list[ev.Event] = self.run.sink.events
            new = events[self._index :]
            self._index += len(new)
            return new
        return list(self.run.events(after=self.state.last_id, follow=False))

    def _apply(self, events: list[ev.Event]) -> None:
        for event in events:
            kind = event.get("type")
            if kind in (ev.RUN_RESTARTED, *ev.TERMINAL_EVENTS):
                self._dirty.update(
                    s.span_id for s in self.state.spans.values() if s.status == "running"
                )
            self.state.apply(event)
            if len(self.event_ids) < MAX_RECORDED_IDS:
                self.event_ids.append(event.get("id", ""))
            if kind == ev.OUTPUT:
                self._emitted.append(self.state.chunks[-1])
            elif "span_id" in event:
                self._dirty.add(str(event["span_id"]))
            self._changed = True

    def step(self) -> bool:
        """Fold what is new and tell listeners (the last time with ``final``); True once ended."""
        with self.lock:
            if self.finished.is_set():
                return True
            events = self._read()
            self._apply(events)
            if events:
                self._quiet_since = time.monotonic()
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
                    if self.step():
                        return
                except RedisError:  # the runtime is away for a moment: keep the view, retry
                    time.sleep(retry.next_delay())
                    continue
                retry.reset()
                time.sleep(self.tick_s)
        finally:
            self.finished.set()

    def _expired(self) -> bool:
        # A log whose terminal event was trimmed, or a run that expired: stop following.
        if self.mode == "local" or time.monotonic() - self._quiet_since < STATUS_CHECK_S:
            return False
        try:
            return self.run.status() in ("succeeded", "failed", "cancelled")
        except KeyError:
            return True

    # --- telling listeners ----------------------------------------------------
    def _flush(self, *, final: bool) -> None:
        if not (self._changed or final):
            return
        tick: Tick = {
            "summary": self.summary(),
            "spans": [self.span_row(i) for i in self._changed_spans()],
            "emitted": "".join(self._emitted),
            "final": final,
        }
        self._dirty.clear()
        self._emitted.clear()
        self._changed = False
        for listener in self._listeners:
            listener(tick)

    def _changed_spans(self) -> list[str]:
        # Parents before children, so the front end can hang each span under its parent.
        spans = self.state.spans
        changed = [i for i in self._dirty if i in spans]
        return sorted(changed, key=lambda i: (spans[i].depth, start_order(spans[i])))

    def full(self) -> Tick:
        """Everything a newly drawn view needs: every span, and the output's tail."""
        with self.lock:
            return {
                "summary": self.summary(),
                "spans": [self.span_row(i) for i in self.state.spans],
                "emitted": self.state.emitted[-EMITTED_RESYNC_CHARS:],
                "final": self.state.done,
            }

    def span_row(self, span_id: str) -> dict[str, Any]:
        span = self.state.spans[span_id]
        row = dsp.span_dict(span)
        row.update(
            start=span.start,
            depth=span.depth,
            model=span.model,
            cost_usd=span.cost_usd,
            error=span.error,
        )
        return row

    def summary(self) -> dict[str, Any]:
        s = self.state
        return {
            "run_id": s.run_id,
            "workflow": s.workflow or dsp.workflow_of(self.run),
            "status": s.status,
            "mode": self.mode,
            "reason": s.reason,
            "restarts": s.restarts,
            "created_at": s.created_at,
            "started_at": s.started_at,
            "ended_at": s.ended_at,
            "now": time.time(),
            "usage": s.usage(),
            "steps": [{**st.to_dict(), "detail": _text(st.detail)} for st in s.steps.values()],
            "span_count": len(s.spans),
            "event_count": s.count,
            "last_event_id": s.last_id,
            "error": s.error,
            "error_type": s.error_type,
            "traceback": s.traceback,
            "truncated": s.truncated,
            "wait": asking(s),
            "children": dsp.children_list(s, dsp.MAX_SNAPSHOT_CHILDREN),
            "child_count": len(s.children),
            "warnings": s.warnings[-MAX_WARNINGS:],
        }

    def data(self) -> dict[str, Any]:
        with self.lock:
            return dsp.run_data(self.state, mode=self.mode, workflow=dsp.workflow_of(self.run))

    def bundle(self) -> dict[str, Any]:
        with self.lock:
            return dsp.bundle(self.data(), traceback=self.state.traceback)


def asking(state: RunState) -> dict[str, Any] | None:
    """A waiting run's wait, with what a view shows of it: one line, and for input the
    field its schema asks for."""
    if state.status != "waiting" or not state.wait:
        return None
    wait = state.wait
    return {**wait, "text": describe_wait(wait), "field": field_kind(wait.get("schema"))}


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
