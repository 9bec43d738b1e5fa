"""The event model: every fact about a run is one event in one ordered log.

An event is a plain JSON-safe dict with at least ``type`` and ``ts`` (wall-clock
seconds, for display only: order comes from the log's ids, never from ``ts``).
A sink appends events to a run's log; the in-process run keeps them in memory,
the runtime writes them to the run's Redis stream. Views fold the log.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from concurrent.futures import Future
from typing import Any, Protocol

from .errors import ConfigError

Event = dict[str, Any]

# Event types. Run-level events carry no span_id.
RUN_QUEUED = "run.queued"
RUN_STARTED = "run.started"
RUN_RESTARTED = "run.restarted"
RUN_SUCCEEDED = "run.succeeded"
RUN_FAILED = "run.failed"
RUN_CANCELLED = "run.cancelled"
RUN_CANCEL_REQUESTED = "run.cancel_requested"
SPAN_STARTED = "span.started"
SPAN_RETRY = "span.retry"
SPAN_FINISHED = "span.finished"
PROGRESS = "progress"
OUTPUT = "output"
LOG_TRUNCATED = "log.truncated"
WARNING = "warning"  # something a person should know about a run (a blocked worker loop)
RUN_WAITING = "run.waiting"  # the attempt ended at a wait: input, a timer or children
RUN_RESUMED = "run.resumed"  # what it waited for came: queued again
INPUT_RECEIVED = "input.received"
CHILD_STARTED = "child.started"
CHILD_ENDED = "child.ended"
STATE_PATCH = "state.patch"  # nf.publish: a JSON patch to a named state of the run

TERMINAL_EVENTS = frozenset({RUN_SUCCEEDED, RUN_FAILED, RUN_CANCELLED})


def make(type_: str, **fields: Any) -> Event:
    return {"type": type_, "ts": time.time(), **fields}


class Sink(Protocol):
    """Where a run's events go.

    ``emit`` may buffer; ``commit_step`` records a finished component's result
    together with its ``span.finished`` event and returns a future that is done
    once both are durable (``None`` when there is nothing to wait for).
    """

    def emit(self, event: Event) -> None: ...

    def emit_at(self, event: Event, position: str, index: int) -> None:
        """Emit an event that is the ``index``-th said at ``position`` (a span's emits and
        progress marks): a durable sink records it, so that a replay skips it."""
        ...

    def commit_step(self, event: Event, step: str, value: Any) -> Future[None] | None: ...

    def record(self, position: str, name: str) -> None:
        """Record which call ``position`` made (durable sinks: replays compare)."""
        ...


class MemorySink:
    """The in-process log: events in a list, with stream-shaped ordered ids.

    ``emit`` only queues an event: appending to a deque is atomic, so a traced call
    takes no lock and makes no id. The queue is numbered in order, from each event's
    ``ts``, when ``events`` is read or a listener is told.
    """

    def __init__(self) -> None:
        self._numbered: list[Event] = []
        self._queued: deque[Event] = deque()
        self._lock = threading.Lock()
        self._ms = 0  # the millisecond of the last id, and its sequence number
        self._seq = 0
        self._prefix = "0-"
        self._next_ts = 0.0  # the first ts of the millisecond after the last id's
        self._listeners: tuple[Any, ...] = ()

    @property
    def events(self) -> list[Event]:
        """Every event so far, in order, each with its ``id``."""
        if self._queued:
            with self._lock:
                self._number()
        return self._numbered

    def emit(self, event: Event) -> None:
        self._queued.append(event)
        if self._listeners:
            self._tell()

    def _number(self) -> None:
        popleft, append, seqs = self._queued.popleft, self._numbered.append, _SEQ
        ms, seq, prefix, next_ts = self._ms, self._seq, self._prefix, self._next_ts
        for _ in range(len(self._queued)):  # what others queue meanwhile waits for next time
            event = popleft()
            ts = event.get("ts")
            if type(ts) is not float or ts >= next_ts:  # a later millisecond, perhaps
                now = int(ts * 1000) if type(ts) is float else time.time_ns() // 1_000_000
                if now > ms:
                    ms, seq, prefix, next_ts = now, -1, f"{now}-", (now + 1) / 1000
            seq += 1
            event["id"] = prefix + seqs[seq] if seq < _SEQ_COUNT else f"{prefix}{seq}"
            append(event)
        self._ms, self._seq, self._prefix, self._next_ts = ms, seq, prefix, next_ts

    def _tell(self) -> None:
        with self._lock:
            start = len(self._numbered)
            self._number()
            told = self._numbered[start:]
            listeners = self._listeners
        for event in told:
            for listener in listeners:
                listener(event)

    def emit_at(self, event: Event, position: str, index: int) -> None:
        self.emit(event)  # an in-process run is never replayed

    def commit_step(self, event: Event, step: str, value: Any) -> Future[None] | None:
        self._queued.append(event)
        if self._listeners:
            self._tell()
        return None

    def record(self, position: str, name: str) -> None:
        pass  # an in-process run is never replayed

    def subscribe(self, listener: Any) -> None:
        """Call ``listener`` with each event emitted from now on."""
        with self._lock:
            self._number()  # what came before is not told
            self._listeners = (*self._listeners, listener)


# The sequence parts of ids made ready (a run logs hundreds of events a millisecond).
_SEQ_COUNT = 1024
_SEQ = tuple(str(i) for i in range(_SEQ_COUNT))

# 19 digits a part at most: always within Redis's 64-bit parts (a millisecond
# clock needs 13), and a rule the OpenAPI document can state exactly.
STREAM_ID_PATTERN = "^[0-9]{1,19}(-[0-9]{1,19})?$"
_STREAM_ID = re.compile(STREAM_ID_PATTERN)
StreamId = tuple[int, int]


def parse_id(text: str) -> StreamId:
    """A stream id as ``(ms, seq)``, the order ids compare in (never as strings).

    ConfigError (a ValueError) for anything not written ``<ms>-<seq>`` or ``<ms>``.
    """
    if not isinstance(text, str) or _STREAM_ID.fullmatch(text) is None:
        raise ConfigError(f"not a stream id: {text!r} (expected '<ms>-<seq>' or '0')")
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)
