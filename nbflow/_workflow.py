"""Workflows: the root of a run, and the things code inside a run can say."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from . import _context as ctx
from . import _events as ev
from ._component import Component, Decorator
from ._preview import truncate
from ._state import to_json
from .errors import ConfigError

if TYPE_CHECKING:
    from .runtime.client import Runtime
    from .runtime.run import Run

PROGRESS_STATES = ("pending", "running", "done", "failed", "retrying")


class Workflow(Component):
    """A component that can be the root of a run, in-process or on the runtime.

    Called as a function it runs in-process; called inside another run it is a
    nested span like any component; ``submit`` sends it to the runtime.
    """

    kind = "workflow"

    @property
    def description(self) -> str:
        """The workflow's docstring, stripped: how the REST API and catalog describe it."""
        return (self.fn.__doc__ or "").strip()

    def submit(self, *args: Any, **kwargs: Any) -> Run:
        """Start a run on the runtime (the embedded default unless connected elsewhere).

        Inside a run on the runtime it starts a child run, linked to this one: its
        ``.result()`` (or ``nf.gather``) suspends the parent without holding a worker.
        """
        frame = ctx.current()
        if frame is not None and frame.run.runtime is not None:
            from ._waits import submit_child

            return submit_child(frame, self, args, kwargs)
        from .runtime.client import get_runtime

        return get_runtime().submit(self, args, kwargs)

    def submit_many(self, calls: Iterable[Any]) -> list[Run]:
        """Start one run per item: a tuple of positional arguments or a dict of keyword ones.

        The code is shipped once and every run is queued in one round trip, for
        fan-outs of hundreds of runs.
        """
        from .runtime.client import get_runtime

        pairs = [((), dict(c)) if isinstance(c, dict) else (tuple(c), {}) for c in calls]
        return get_runtime().submit_many(self, pairs)

    def deploy(self, *, runtime: Runtime | None = None) -> str:
        """Publish this workflow by name, so the REST API and other clients can start it."""
        from .runtime.client import get_runtime

        return (runtime or get_runtime()).deploy(self)


workflow = Decorator(
    Workflow, "Make ``fn`` a workflow: ``@nf.workflow`` or ``@nf.workflow(name=...)``."
)


def progress(step: str, detail: Any = None, *, state: str = "running") -> None:
    """Mark a named step of the current run for UIs; a new running step ends the last one."""
    if state not in PROGRESS_STATES:
        raise ConfigError(
            f"unknown progress state {state!r}; use one of {', '.join(PROGRESS_STATES)}"
        )
    frame = ctx.current()
    if frame is None:
        return
    detail = truncate(detail) if isinstance(detail, str) else detail
    event = ev.make(ev.PROGRESS, span_id=frame.span_id, step=str(step), state=state, detail=detail)
    frame.run.say(frame, event)


def emit(chunk: Any) -> None:
    """Stream a piece of output from the current run (outside a run it is dropped).

    Text streams as text; anything else JSON can hold streams as that JSON value
    (readers get the value back), and other objects as their ``str``.
    """
    frame = ctx.current()
    if frame is None:
        return
    if isinstance(chunk, str):
        event = ev.make(ev.OUTPUT, span_id=frame.span_id, chunk=chunk)
    else:
        try:
            value = to_json(chunk, "nf.emit")
        except ConfigError:
            event = ev.make(ev.OUTPUT, span_id=frame.span_id, chunk=str(chunk))
        else:
            event = ev.make(ev.OUTPUT, span_id=frame.span_id, value=value)
    frame.run.say(frame, event)


def current_run_id() -> str | None:
    """The id of the run this code runs in; None outside any run."""
    frame = ctx.current()
    return None if frame is None else frame.run.run_id
