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
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from ._events import Event, Sink


class Memo(Protocol):
    """Recorded results of a run's finished steps (durable runs only)."""

    def lookup(self, step: str) -> tuple[bool, Any]: ...


class CacheStore(Protocol):
    def get(self, key: str) -> tuple[bool, Any]: ...

    def set(self, key: str, value: Any, ttl_s: float | None) -> None: ...


@dataclass
class RunContext:
    run_id: str
    sink: Sink
    cache: CacheStore
    memo: Memo | None = None
    redis: Any = None  # the runtime's Redis on a worker, for state shared across workers
    cancelled: threading.Event = field(default_factory=threading.Event)

    def emit(self, event: Event) -> None:
        self.sink.emit(event)


class Frame:
    """One open span: where child spans and events attach."""

    __slots__ = ("_children", "attrs", "run", "span_id", "step")

    def __init__(self, run: RunContext, span_id: str | None, step: str) -> None:
        self.run = run
        self.span_id = span_id
        self.step = step
        self.attrs: dict[str, Any] = {}
        self._children: dict[str, int] | None = None  # made with the first child

    def child_step(self, name: str, arg_digest: str) -> str:
        # Deterministic step keys let a restarted run find the results it already
        # has: the k-th call of a name with the same arguments under one parent.
        base = f"{name}:{arg_digest}"
        with _children_lock:
            children = self._children
            if children is None:
                children = self._children = {}
            k = children[base] = children.get(base, 0) + 1
        return f"{self.step}/{base}#{k}"


# One lock for every frame's child counters: held for a few operations, and a
# frame (most are leaves) then needs no lock of its own.
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
