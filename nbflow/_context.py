"""Which run and span the running code belongs to.

The current span lives in a ContextVar, so asyncio tasks inherit it. Threads do
not inherit context in Python 3.11, so the first run started in a process
teaches ``Thread.start`` and ``ThreadPoolExecutor.submit`` to carry it over:
components called from worker threads then nest under the span that started
the thread, as users expect.
"""

from __future__ import annotations

import contextvars
import hashlib
import itertools
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from ._events import Event, Sink
from .constants import CALL_PREFIX, SAID_PREFIX
from .errors import AttemptFenced, NondeterminismError, RunCancelled


class Memo(Protocol):
    """What earlier attempts of a run recorded (durable runs only): finished steps'
    results, and how many events (emits, progress marks) each span logged."""

    def lookup(self, step: str) -> tuple[bool, Any]: ...

    def logged(self, position: str) -> int: ...

    def made(self, position: str) -> str | None: ...


class CacheStore(Protocol):
    def get(self, key: str) -> tuple[bool, Any]: ...

    def set(self, key: str, value: Any, ttl_s: float | None) -> None: ...


@dataclass
class RunContext:
    """One attempt at a run, as the code inside it sees it."""

    run_id: str
    sink: Sink
    cache: CacheStore
    memo: Memo | None = None
    redis: Any = None  # the runtime's Redis on a worker, for state shared across workers
    cancelled: threading.Event = field(default_factory=threading.Event)
    attempt: int = 0  # which claim of the run this is (0: an in-process run)
    runtime: Any = None  # on a worker: the runtime client, for child runs and waits
    fenced: bool = False  # the attempt lost its run: it must stop and write nothing
    publisher: Any = None  # nf.publish's states (see _state.Publisher), made on first use
    # threads of steps abandoned by with_timeout (a thread cannot be stopped)
    abandoned: list[threading.Thread] = field(default_factory=list)
    # span_id_for's hash with the run id read: each span id copies it, then reads the step
    _span_hasher: Any = field(init=False, repr=False, compare=False)
    # a run never replayed counts its spans: 1 << 64 (cut off), then its id's first half
    _spans: Iterator[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._span_hasher = hashlib.blake2b(f"{self.run_id}|".encode(), digest_size=8)
        try:
            first = (1 << 64) | int(self.run_id[:8], 16) << 32
        except ValueError:  # a run id that is not hex (tests name theirs)
            first = 1 << 64
        self._spans = itertools.count(first + 1)

    def span_id(self, step: str) -> str:
        """The id of the span of ``step`` in this run. A run that may be replayed (on the
        runtime, or with recorded steps) derives it from the step, ``span_id_for(run_id,
        step)``, so that every attempt names a span alike; a run that is never replayed
        numbers its spans after the first half of its id, at a fraction of a hash's cost."""
        if self.runtime is None and self.memo is None:
            return hex(next(self._spans))[3:]  # 16 hex digits, without "0x1"
        h = self._span_hasher.copy()
        h.update(step.encode())
        span_id: str = h.hexdigest()
        return span_id

    def emit(self, event: Event) -> None:
        self.sink.emit(event)

    def fence(self) -> None:
        """This attempt lost its run: every waiting or later step unwinds."""
        self.fenced = True
        self.cancelled.set()

    def check(self) -> None:
        """Before a step starts: raise if the attempt must stop (cancelled or fenced)."""
        if self.cancelled.is_set():
            if self.fenced:
                raise AttemptFenced(f"run {self.run_id}: this attempt lost the run")
            raise RunCancelled(f"run {self.run_id} was cancelled")

    def call_step(self, frame: Frame, name: str, arg_digest: str) -> str:
        """The step key of a call of ``name`` in ``frame``; on the runtime, also checks that
        a replay makes the same call at this position as the attempt that recorded it."""
        step = frame.child_step(name, arg_digest)
        if self.runtime is None:  # in-process runs are never replayed
            return step
        position = f"{CALL_PREFIX}{frame.step}#{frame.next_call()}"
        made = self.memo.made(position) if self.memo is not None else None
        if made is None:
            self.sink.record(position, name)
        elif made != name:
            raise NondeterminismError(
                f"run {self.run_id}: replaying the workflow made {name!r} where the run had "
                f"made {made!r} (call {position[1:]}); code between steps must make the same "
                "calls in the same order on every attempt: move what changes (time, "
                "randomness, I/O) into a component"
            )
        return step

    def recorded(self, step: str) -> tuple[bool, Any]:
        """(True, value) if an earlier attempt recorded ``step``."""
        if self.memo is None:
            return False, None
        return self.memo.lookup(step)

    def next_position(self, frame: Frame) -> tuple[str, int] | None:
        """Where the next emit, progress mark or publish in ``frame`` goes in the log;
        None when an earlier attempt logged it already (replayed code says nothing twice)."""
        index = frame.next_said()
        position = SAID_PREFIX + frame.step
        if self.memo is not None and index <= self.memo.logged(position):
            return None
        return position, index

    def say(self, frame: Frame, event: Event) -> None:
        """Log an emit or progress mark at its position in ``frame`` (see next_position)."""
        self.flush_published()
        position = self.next_position(frame)
        if position is not None:
            self.sink.emit_at(event, *position)

    def flush_published(self) -> None:
        """Send published states still waiting (before a later event, a step's end, a
        wait or the run's end: the log keeps them in the order the code made them)."""
        if self.publisher is not None:
            self.publisher.flush()


class Frame:
    """One open span: where child spans and events attach."""

    __slots__ = ("_attrs", "_calls", "_children", "_said", "run", "span_id", "step")

    def __init__(self, run: RunContext, span_id: str | None, step: str) -> None:
        self.run = run
        self.span_id = span_id
        self.step = step
        self._attrs: dict[str, Any] | None = None  # made on first use: most spans have none
        self._children: dict[str, Iterator[int]] | None = None  # made with the first child
        self._said = 0  # emits and progress marks so far: their positions
        self._calls = 0  # steps, waits and child runs so far (durable runs only)

    @property
    def attrs(self) -> dict[str, Any]:
        """The span's attributes (model, token counts, ...), recorded when it finishes."""
        attrs = self._attrs
        if attrs is None:
            attrs = self._attrs = {}
        return attrs

    def next_said(self) -> int:
        with _children_lock:
            self._said += 1
            return self._said

    def next_call(self) -> int:
        with _children_lock:
            self._calls += 1
            return self._calls

    def child_step(self, name: str, arg_digest: str) -> str:
        # Deterministic step keys let a restarted run find the results it already
        # has: the k-th call of a name with the same arguments under one parent.
        base = f"{name}:{arg_digest}"
        children = self._children
        if children is None:
            with _children_lock:
                children = self._children
                if children is None:
                    children = self._children = {}
        # No lock on the way: setdefault and a count's next are each atomic.
        counter = children.get(base)
        if counter is None:
            counter = children.setdefault(base, itertools.count(1))
        return f"{self.step}/{base}#{next(counter)}"


def root_frame(run: RunContext) -> Frame:
    """The frame a run's root span opens under: no span of its own, the empty step."""
    return Frame(run, None, "")


# One lock for every frame's counters: held for a few operations, and a frame (most
# are leaves) then needs no lock of its own.
_children_lock = threading.Lock()

_current: contextvars.ContextVar[Frame | None] = contextvars.ContextVar(
    "nbflow_frame", default=None
)


# The ContextVar's own methods, called on every traced call (no wrapper frames):
current = _current.get  # () -> the open Frame, or None outside a run
enter = _current.set  # (frame) -> a token for leave
leave = _current.reset  # (token)


def span_id_for(run_id: str, step: str) -> str:
    return hashlib.blake2b(f"{run_id}|{step}".encode(), digest_size=8).hexdigest()


_propagation_installed = False
_install_lock = threading.Lock()


def install_thread_propagation() -> None:
    global _propagation_installed
    with _install_lock:
        if _propagation_installed:
            return
        _patch_thread_start()
        _patch_executor_submit()
        _propagation_installed = True


def _patch_thread_start() -> None:
    original_start = threading.Thread.start

    def start(self: threading.Thread) -> None:
        if _current.get() is not None:
            ctx = contextvars.copy_context()
            run = self.run
            self.run = lambda: ctx.run(run)  # type: ignore[method-assign]
        original_start(self)

    threading.Thread.start = start  # type: ignore[method-assign]


def _patch_executor_submit() -> None:
    original_submit = ThreadPoolExecutor.submit

    def submit(self: ThreadPoolExecutor, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        if _current.get() is not None:
            ctx = contextvars.copy_context()
            return original_submit(self, ctx.run, fn, *args, **kwargs)
        return original_submit(self, fn, *args, **kwargs)

    ThreadPoolExecutor.submit = submit  # type: ignore[method-assign, assignment]
