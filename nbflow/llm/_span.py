"""The llm span of one API call, built on the same step machinery as every component.

Inside a run the call is a child step of the current span: durable (a replayed
run gets the recorded response back without calling the API) and finished
exactly once, after the last attempt. Outside any run it is the one span of a
new in-process run, as a component called on its own would be, so
``nf.last_run()`` shows it.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import Future
from typing import Any

from nbflow import _context as ctx
from nbflow._component import Component
from nbflow._local import LocalRun, start_local
from nbflow._step import Step
from nbflow.llm._attrs import CONTENT_ARGS, HIDDEN_ARGS, given


def _api_call(**request: Any) -> Any:
    raise TypeError("an llm component is called through nbflow.llm's OpenAI clients")


class LLMComponent(Component):
    """An API endpoint and model as a component: what names the call's steps and spans.

    Its ``redact`` keeps transport options out of the recorded request, and the
    conversation too when content is not recorded.
    """

    kind = "llm"

    @classmethod
    def build(cls, operation: str, model: str, *, record_content: bool) -> LLMComponent:
        hidden = (*HIDDEN_ARGS, *(() if record_content else CONTENT_ARGS))
        return cls(_api_call, name=f"{operation} {model}", redact=hidden)


class _CallStep(Step):
    """A step whose arguments are one API request.

    It opens as ``Step.open`` does, minus the cache (llm components have none) and
    the argument binding: the step key digests the request in one pass of the C
    JSON encoder, which matters on a path taken by every call.
    """

    __slots__ = ()

    @classmethod
    def open_call(cls, comp: LLMComponent, request: dict[str, Any], parent: ctx.Frame) -> _CallStep:
        run = parent.run
        run.check()
        step_key = run.call_step(parent, comp.name, request_digest(request))
        step = cls(comp, run, step_key, parent.span_id)
        if run.memo is not None:
            step.done, step.value = run.memo.lookup(step_key)
            if step.done:
                return step
        step.start(step._preview(request))
        return step


def request_digest(request: dict[str, Any]) -> str:
    """A stable digest of a request; "" when it holds values JSON cannot stand for."""
    try:
        text = _ENCODER.encode(request)
    except (TypeError, ValueError):
        return ""  # such calls are told apart by call order alone, as in core steps
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def _plain(value: Any) -> Any:
    if not given(value):
        return None
    dump = getattr(value, "model_dump", None)  # messages passed back as SDK objects
    if callable(dump):
        return dump(mode="json")
    raise TypeError(type(value).__name__)


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=_plain)


class CallSpan:
    """A call's span, plus the one-call run around it when it was made outside any run."""

    def __init__(self, step: _CallStep, local: LocalRun | None) -> None:
        self.step = step
        self.local = local
        self.closed = False

    @classmethod
    def open(cls, comp: LLMComponent, request: dict[str, Any]) -> CallSpan:
        parent = ctx.current()
        if parent is not None:
            return cls(_CallStep.open_call(comp, request, parent), None)
        local = start_local(comp, (), request)
        return cls(_CallStep.open_call(comp, request, ctx.root_frame(local.context)), local)

    @property
    def replayed(self) -> bool:
        return self.step.done

    @property
    def recorded(self) -> Any:
        return self.step.value

    @property
    def attrs(self) -> dict[str, Any]:
        return self.step.attrs

    @property
    def cancelled(self) -> bool:
        return self.step.run.cancelled.is_set()

    def retried(self, attempt: int, error: BaseException, delay_s: float, **fields: Any) -> None:
        self.step.retried(attempt, error, delay_s, **fields)

    def succeeded(self, value: Any, attempt: int, output: Any) -> Future[None] | None:
        """Finish ok and record ``value`` for replays; a future that is done once it is durable."""
        self.closed = True
        step = self.step
        event = step.finished_event("ok", attempts=attempt, output=output)
        pending = step.run.sink.commit_step(event, step.step, value)
        if self.local is not None:
            self.local.record_succeeded(value, (), shown=output)
        return pending

    def ended(self, attempt: int, output: Any) -> None:
        """Finish ok without recording a result (a stream the caller closed early)."""
        self.closed = True
        self.step.run.emit(self.step.finished_event("ok", attempts=attempt, output=output))
        if self.local is not None:
            self.local.record_succeeded(output, ())

    def failed(self, error: BaseException, attempt: int) -> None:
        self.closed = True
        self.step.failed(error, attempt)  # llm components have no retry policy: this finishes
        if self.local is not None:
            self.local.record_failed(error)
