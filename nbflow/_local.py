"""In-process runs: the same event log as the runtime, kept in memory."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from . import _context as ctx
from . import _events as ev
from ._cache import local_cache
from ._preview import preview
from ._root import run_root, run_root_async
from ._step import bound_arguments, describe_error
from ._tracebacks import format_traceback
from .errors import RunCancelled

if TYPE_CHECKING:
    from ._component import Component
    from ._trace import Trace
    from .runtime.run import Run

_last: LocalRun | Run | None = None
_last_lock = threading.Lock()


def last_run() -> LocalRun | Run | None:
    """The run most recently started from this process (in-process or submitted)."""
    return _last


def set_last(run: LocalRun | Run) -> None:
    global _last
    with _last_lock:
        _last = run


def new_run_id() -> str:
    return secrets.token_hex(8)


class LocalRun:
    """A handle on an in-process run, with the same reading methods as a runtime run."""

    def __init__(self, workflow: str) -> None:
        self.id = new_run_id()
        self.workflow = workflow
        self.sink = ev.MemorySink()
        self.context = ctx.RunContext(self.id, self.sink, local_cache)
        self._status = "running"
        self._value: Any = None
        self._error: BaseException | None = None
        self._done = threading.Event()

    def __repr__(self) -> str:
        return f"<nbflow run {self.id} {self.workflow!r} {self._status} (in-process)>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        from .jupyter.view import mimebundle

        return mimebundle(self, include, exclude)

    def watch(self) -> Any:
        """Show this run live in the notebook: its whole history, then updates until it ends."""
        from .jupyter.view import watch

        return watch(self)

    def status(self) -> str:
        """The run's status: ``running``, ``succeeded``, ``failed`` or ``cancelled``."""
        return self._status

    def result(self, timeout_s: float | None = None) -> Any:
        """The return value once the run ends; its error re-raised if it failed."""
        if not self._done.wait(timeout_s):
            raise TimeoutError(f"run {self.id} still {self._status} after {timeout_s} s")
        if self._error is not None:
            raise self._error
        return self._value

    def cancel(self) -> None:
        """Ask the run to stop at its next component boundary."""
        self.context.cancelled.set()

    def events(self, after: str = "0") -> Iterator[ev.Event]:
        """The run's events after stream id ``after``, in order."""
        floor = ev.parse_id(after)
        for event in list(self.sink.events):
            if ev.parse_id(event["id"]) > floor:
                yield event

    def state(self, name: str) -> Any:
        """The latest value the run published as ``name`` (``nf.publish``); None if none."""
        from ._fold import fold

        return fold(list(self.sink.events), self.id).published.get(name)

    def trace(self) -> Trace:
        """The run's trace so far: spans, events, usage and timeline."""
        from ._trace import Trace

        return Trace(self.id, list(self.sink.events))

    # --- lifecycle, driven by whoever started the run (start_local) -------------
    def record_started(
        self, comp: Component, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        """Log the run's start (its root component and arguments)."""
        self.sink.emit(
            ev.make(
                ev.RUN_STARTED,
                workflow=self.workflow,
                kind=comp.kind,
                mode="local",
                input=preview(bound_arguments(comp, args, kwargs), redact=comp.redact),
            )
        )

    def record_succeeded(self, value: Any, redact: tuple[str, ...], *, shown: Any = None) -> None:
        """``shown`` replaces the value's preview in the log (e.g. content kept out)."""
        self._value, self._status = value, "succeeded"
        output = preview(value, redact=redact) if shown is None else shown
        self.sink.emit(ev.make(ev.RUN_SUCCEEDED, output=output))
        self._done.set()

    def record_failed(self, error: BaseException) -> None:
        """Log the run's end in error (or cancellation) and wake waiters."""
        self._error = error
        if isinstance(error, RunCancelled):
            self._status = "cancelled"
            self.sink.emit(ev.make(ev.RUN_CANCELLED, reason="cancelled"))
        else:
            self._status = "failed"
            self.sink.emit(
                ev.make(
                    ev.RUN_FAILED,
                    error=describe_error(error),
                    error_type=type(error).__name__,
                    traceback=format_traceback(error),
                )
            )
        self._done.set()


def start_local(comp: Component, args: tuple[Any, ...], kwargs: dict[str, Any]) -> LocalRun:
    """A new in-process run with ``comp`` at its root, started and made ``nf.last_run()``."""
    ctx.install_thread_propagation()
    run = LocalRun(comp.name)
    set_last(run)
    run.record_started(comp, args, kwargs)
    return run


def run_local(comp: Component, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Run ``comp`` as the root of a new in-process run."""
    run = start_local(comp, args, kwargs)
    if comp.is_async:
        return _run_async(run, comp, args, kwargs)
    try:
        value = run_root(run.context, comp, args, kwargs)
    except BaseException as error:
        run.record_failed(error)
        raise
    run.record_succeeded(value, comp.redact)
    return value


async def _run_async(
    run: LocalRun, comp: Component, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    try:
        value = await run_root_async(run.context, comp, args, kwargs)
    except BaseException as error:
        run.record_failed(error)
        raise
    run.record_succeeded(value, comp.redact)
    return value
