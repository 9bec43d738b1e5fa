"""Folding a run's event log into its state: spans, progress steps and what it emitted.

Every view (DataFrames, the notebook widget, the CLI, the REST API) is built on
``RunState.apply``, which takes one event at a time so live views fold as the
events arrive and replayed views fold the same way. ``extension/src/fold.ts``
is the same fold in TypeScript: ``RunState.to_dict`` is what both must agree
on, case by case, in tests/vectors.

The rules both follow where a log is unusual: an event without ``ts`` still
applies, and the times it would set are unknown (None); an event for a span
whose ``span.started`` is not in the log (a log read from its middle) makes
that span, named ``?``; attributes merge, later keys winning; an event field
cut to fit the event size limit (listed in its ``cut``) is kept as the text
it was cut to, and ``attrs`` that are no longer an object are left out.
"""

from __future__ import annotations

import json
from typing import Any

from . import _events as ev
from ._spanstate import (
    SpanState,
    Spend,
    StepState,
    add_spend,
    number,
    retry_entry,
    ts_of,
)

__all__ = ["RunState", "SpanState", "StepState", "fold"]

_ENDED = {ev.RUN_SUCCEEDED: "succeeded", ev.RUN_FAILED: "failed", ev.RUN_CANCELLED: "cancelled"}
# What a step or span still running becomes when its run ends.
_STEP_END = {"succeeded": "done", "failed": "failed", "cancelled": "cancelled"}


class RunState:
    """A run as its events describe it so far.

    ``output`` is the run's return value (a JSON preview), ``emitted`` the text
    it streamed with ``nf.emit``.
    """

    def __init__(self, run_id: str = "") -> None:
        self.run_id = run_id
        self.workflow: str | None = None
        self.status = "queued"
        self.reason: str | None = None
        self.error: str | None = None
        self.error_type: str | None = None
        self.traceback: str | None = None
        self.output: Any = None
        self.created_at: float | None = None
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.restarts = 0
        self.truncated = False
        self.spans: dict[str, SpanState] = {}
        self.steps: dict[str, StepState] = {}
        self.chunks: list[str] = []  # what it emitted, chunk by chunk, as text
        self.published: dict[str, Any] = {}  # nf.publish: each state's value so far
        self.publish_errors: dict[str, str] = {}  # a patch that did not apply: name -> why
        self.warnings: list[str] = []  # what the worker said about the run (a blocked loop)
        self.wait: dict[str, Any] | None = None  # what a waiting run waits for
        self.inputs: dict[str, Any] = {}  # answers it was sent, by name
        self.children: dict[str, dict[str, Any]] = {}  # child run id -> workflow, status
        self.last_id = "0-0"
        self.count = 0
        self._usage = {"input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0, "llm_calls": 0}

    @property
    def done(self) -> bool:
        return self.status in ("succeeded", "failed", "cancelled")

    @property
    def emitted(self) -> str:
        """Everything the run streamed with ``nf.emit``, as one text."""
        return "".join(self.chunks)

    def apply(self, event: ev.Event) -> None:
        self.count += 1
        if "id" in event:
            self.last_id = event["id"]
        handler = _HANDLERS.get(event.get("type", ""))
        if handler is not None:
            handler(self, event)

    def usage(self) -> dict[str, Any]:
        """Tokens and cost of every call the log says was made (cache hits spent nothing)."""
        totals = dict(self._usage)
        totals["total_tokens"] = totals["input_tokens"] + totals["output_tokens"]
        return totals

    def to_dict(self) -> dict[str, Any]:
        """The state as JSON: what both folds must agree on (tests/vectors)."""
        return {
            **{k: getattr(self, k) for k in _RUN_FIELDS},
            "workflow": self.workflow or None,
            "emitted": self.emitted,
            "usage": self.usage(),
            "steps": [s.to_dict() for s in self.steps.values()],
            "spans": [s.to_dict() for s in self.spans.values()],
            "wait": self.wait,
            "inputs": dict(self.inputs),
            "children": [_child_dict(k, c) for k, c in self.children.items()],
            "warnings": list(self.warnings),
            "published": dict(self.published),
        }

    # --- spans ------------------------------------------------------------
    def _span(self, e: ev.Event) -> SpanState:
        """The event's span; one named ``?`` when its start is not in the log."""
        span = self.spans.get(str(e.get("span_id")))
        if span is None:
            span = self._add_span(
                {"span_id": e.get("span_id"), "ts": None, "type": ev.SPAN_STARTED}
            )
        return span

    def _add_span(self, e: ev.Event) -> SpanState:
        parent_id = e.get("parent_id")
        parent = None if parent_id is None else self.spans.get(str(parent_id))
        span = SpanState(
            span_id=str(e.get("span_id")),
            parent_id=None if parent_id is None else str(parent_id),
            name=_text(e.get("name"), "?"),
            kind=_text(e.get("kind"), "component"),
            step=_text(e.get("step"), ""),
            start=ts_of(e),
            input=e.get("input"),
            depth=0 if parent is None else parent.depth + 1,
        )
        self.spans[span.span_id] = span
        return span

    def _parent(self, span: SpanState) -> SpanState | None:
        """The span's parent, if it was in the log when the span began (never a cycle)."""
        parent = None if span.parent_id is None else self.spans.get(span.parent_id)
        return parent if parent is not None and parent.depth == span.depth - 1 else None

    def _spend(self, span: SpanState, spend: Spend) -> None:
        span.spent(spend)
        node: SpanState | None = span
        while node is not None:
            add_spend(node.rollup, spend)
            node = self._parent(node)
        for key in ("input_tokens", "output_tokens", "cost_usd"):
            self._usage[key] += getattr(spend, key)
        self._usage["llm_calls"] += 1

    # --- handlers ---------------------------------------------------------
    def _queued(self, e: ev.Event) -> None:
        self.workflow = _given(e.get("workflow"), self.workflow)
        self.created_at = ts_of(e)

    def _started(self, e: ev.Event) -> None:
        self.workflow = e.get("workflow") or self.workflow
        self.status = "running"
        self.started_at = _given(self.started_at, ts_of(e))
        self.created_at = _given(self.created_at, ts_of(e))

    def _restarted(self, e: ev.Event) -> None:
        self.status = "queued"
        self.reason = e.get("reason")
        self.restarts += 1

    def _ended(self, e: ev.Event) -> None:
        self.status = _ENDED[e["type"]]
        ts = ts_of(e)
        self.ended_at = _given(ts, self.ended_at)
        self.output = e.get("output")
        self.error, self.error_type = e.get("error"), e.get("error_type")
        self.traceback = e.get("traceback")
        self.reason = _given(e.get("reason"), self.reason)
        final = _STEP_END[self.status]
        for step in self.steps.values():
            if step.state in ("running", "retrying"):
                step.state = final
            if step.state != "pending":  # a step declared but never begun did not end
                step.end = _given(step.end, ts)
        for span in self.spans.values():
            if span.status == "running":
                span.status = "cancelled" if self.status == "cancelled" else "error"
                span.end = ts

    def _span_started(self, e: ev.Event) -> None:
        span = self.spans.get(str(e.get("span_id")))
        if span is None:
            self._add_span(e)
            return
        # The same step started again: a later attempt of the run re-runs it.
        span.restarts += 1
        span.start, span.end, span.status = ts_of(e), None, "running"
        span.output = span.error = span.error_type = span.traceback = None
        span.cached = False
        span.input = _given(e.get("input"), span.input)

    def _span_retry(self, e: ev.Event) -> None:
        span = self._span(e)
        span.retries.append(retry_entry(e))
        attempt = number(e.get("attempt"))
        span.attempts = (int(attempt) if attempt is not None and attempt.is_integer() else 0) + 1

    def _span_finished(self, e: ev.Event) -> None:
        span = self._span(e)
        span.status = _text(e.get("status"), "ok")
        span.end = ts_of(e)
        span.attempts = _given(e.get("attempts"), span.attempts)
        span.cached = e.get("cached") is True
        span.output = e.get("output")
        span.error, span.error_type = e.get("error"), e.get("error_type")
        span.traceback = e.get("traceback")
        attrs = e.get("attrs")
        if isinstance(attrs, dict):
            span.attrs.update(attrs)
        spend = Spend.of(e)
        if spend is not None:
            self._spend(span, spend)

    def _progress(self, e: ev.Event) -> None:
        state, ts = _text(e.get("state"), "running"), ts_of(e)
        if state == "running":  # a new step running ends the one before it
            for other in self.steps.values():
                if other.state == "running":
                    other.state = "done"
                    other.end = _given(other.end, ts)
        name = _text(e.get("step"), "")
        step = self.steps.get(name)
        if step is None:
            step = self.steps[name] = StepState(name, state)
        if step.start is None and state != "pending":  # declared ahead is not begun
            step.start = ts
        step.state, step.detail = state, e.get("detail")
        if state in ("done", "failed"):
            step.end = _given(step.end, ts)
        elif state == "running":
            step.end = None

    def _output(self, e: ev.Event) -> None:
        if "value" in e:  # a JSON value, not text
            self.chunks.append(json.dumps(e["value"]))
        else:
            self.chunks.append(_text(e.get("chunk"), ""))

    def _state_patch(self, e: ev.Event) -> None:
        from ._state import apply

        name = str(e.get("name"))
        try:
            self.published[name] = apply(self.published.get(name), e.get("patch") or [])
        except Exception as error:  # a log cut short: keep the last good value, say why
            self.publish_errors[name] = str(error) or type(error).__name__
        else:
            self.publish_errors.pop(name, None)

    def _truncated(self, e: ev.Event) -> None:
        self.truncated = True

    def _warning(self, e: ev.Event) -> None:
        self.warnings.append(_text(e.get("message"), ""))

    def _waiting(self, e: ev.Event) -> None:
        self.status = "waiting"
        self.wait = e.get("wait")

    def _resumed(self, e: ev.Event) -> None:
        self.status = "queued"
        self.wait = None

    def _input(self, e: ev.Event) -> None:
        self.inputs[str(e.get("name"))] = e.get("value")

    def _child_started(self, e: ev.Event) -> None:
        self.children[str(e["child_id"])] = {"workflow": e.get("workflow"), "status": "running"}

    def _child_ended(self, e: ev.Event) -> None:
        child = self.children.setdefault(str(e["child_id"]), {"workflow": None})
        child.update({k: v for k, v in e.items() if k not in ("type", "ts", "id", "child_id")})


_RUN_FIELDS = (
    "run_id", "status", "reason", "error", "error_type", "traceback", "output",
    "created_at", "started_at", "ended_at", "restarts", "truncated",
)  # fmt: skip


def _given(value: Any, otherwise: Any) -> Any:
    return otherwise if value is None else value


def _text(value: Any, otherwise: str) -> str:
    return otherwise if value is None else str(value)


def _child_dict(child_id: str, child: dict[str, Any]) -> dict[str, Any]:
    return {
        "child_id": child_id,
        "workflow": child.get("workflow"),
        "status": child.get("status", "running"),
        "total_tokens": child.get("total_tokens", 0),
        "cost_usd": child.get("cost_usd", 0),
    }


_HANDLERS = {
    ev.RUN_QUEUED: RunState._queued,
    ev.RUN_STARTED: RunState._started,
    ev.RUN_RESTARTED: RunState._restarted,
    ev.RUN_SUCCEEDED: RunState._ended,
    ev.RUN_FAILED: RunState._ended,
    ev.RUN_CANCELLED: RunState._ended,
    ev.SPAN_STARTED: RunState._span_started,
    ev.SPAN_RETRY: RunState._span_retry,
    ev.SPAN_FINISHED: RunState._span_finished,
    ev.PROGRESS: RunState._progress,
    ev.OUTPUT: RunState._output,
    ev.LOG_TRUNCATED: RunState._truncated,
    ev.WARNING: RunState._warning,
    ev.RUN_WAITING: RunState._waiting,
    ev.RUN_RESUMED: RunState._resumed,
    ev.INPUT_RECEIVED: RunState._input,
    ev.CHILD_STARTED: RunState._child_started,
    ev.CHILD_ENDED: RunState._child_ended,
    ev.STATE_PATCH: RunState._state_patch,
}


def fold(events: Any, run_id: str = "") -> RunState:
    state = RunState(run_id)
    for event in events:
        state.apply(event)
    return state
