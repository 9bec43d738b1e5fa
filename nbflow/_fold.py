"""Folding a run's event log into its state: spans, progress steps and output.

Every view (DataFrames, the notebook widget, the CLI, the REST API) is built on
``RunState.apply``, which takes one event at a time so live views fold as the
events arrive and replayed views fold the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from . import _events as ev

USAGE_ATTRS = {
    "input_tokens": "gen_ai.usage.input_tokens",
    "output_tokens": "gen_ai.usage.output_tokens",
}


@dataclass
class SpanState:
    span_id: str
    parent_id: str | None
    name: str
    kind: str
    step: str = ""
    status: str = "running"
    start: float = 0.0
    end: float | None = None
    attempts: int = 1
    cached: bool = False
    restarts: int = 0
    input: Any = None
    output: Any = None
    error: str | None = None
    error_type: str | None = None
    traceback: str | None = None
    retries: list[dict[str, Any]] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)
    depth: int = 0

    @property
    def duration_ms(self) -> float | None:
        return None if self.end is None else (self.end - self.start) * 1000

    @property
    def model(self) -> str | None:
        return self.attrs.get("gen_ai.response.model") or self.attrs.get("gen_ai.request.model")

    def tokens(self, which: str) -> int:
        value = self.attrs.get(USAGE_ATTRS[which], 0)
        return int(value) if isinstance(value, int | float) else 0

    def marks(self) -> list[str]:
        """What a one-line view notes beside a span: retries, cache hits, tokens."""
        marks = []
        if self.attempts > 1:
            marks.append(f"{self.attempts} attempts")
        if self.cached:
            marks.append("cached")
        tokens = self.tokens("input_tokens") + self.tokens("output_tokens")
        if tokens:
            marks.append(f"{tokens} tokens")
        return marks

    @property
    def cost_usd(self) -> float:
        value = self.attrs.get("nbflow.cost_usd", 0.0)
        return float(value) if isinstance(value, int | float) else 0.0


@dataclass
class StepProgress:
    state: str
    detail: Any = None
    ts: float = 0.0


class RunState:
    """A run as its events describe it so far."""

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
        self.progress: dict[str, StepProgress] = {}
        self.chunks: list[str] = []  # the streamed output as text
        self.emitted: list[Any] = []  # each emit as it was made: text or a JSON value
        self.published: dict[str, Any] = {}  # nf.publish: each state's value so far
        self.warnings: list[str] = []  # what the worker said about the run (a blocked loop)
        self.wait: dict[str, Any] | None = None  # what a waiting run waits for
        self.inputs: dict[str, Any] = {}  # answers it was sent, by name
        self.children: dict[str, dict[str, Any]] = {}  # child run id -> workflow, status
        self.last_id = "0-0"
        self.count = 0

    @property
    def done(self) -> bool:
        return self.status in ("succeeded", "failed", "cancelled")

    def apply(self, event: ev.Event) -> None:
        self.count += 1
        if "id" in event:
            self.last_id = event["id"]
        handler = _HANDLERS.get(event.get("type", ""))
        if handler is not None:
            handler(self, event)

    def usage(self) -> dict[str, Any]:
        totals = {
            "input_tokens": 0,
            "output_tokens": 0,
            "total_tokens": 0,
            "cost_usd": 0.0,
            "llm_calls": 0,
        }
        for span in self.spans.values():
            if span.kind != "llm" or span.cached:
                continue
            totals["llm_calls"] += 1
            totals["input_tokens"] += span.tokens("input_tokens")
            totals["output_tokens"] += span.tokens("output_tokens")
            totals["cost_usd"] += span.cost_usd
        totals["total_tokens"] = totals["input_tokens"] + totals["output_tokens"]
        return totals

    # --- handlers ---------------------------------------------------------
    def _queued(self, e: ev.Event) -> None:
        self.workflow = e.get("workflow", self.workflow)
        self.created_at = e["ts"]

    def _started(self, e: ev.Event) -> None:
        self.workflow = e.get("workflow") or self.workflow
        self.status = "running"
        self.started_at = self.started_at or e["ts"]
        self.created_at = self.created_at or e["ts"]

    def _restarted(self, e: ev.Event) -> None:
        self.status = "queued"
        self.reason = e.get("reason")
        self.restarts += 1
        for span in self.spans.values():
            if span.status == "running":
                span.restarts += 1

    def _ended(self, e: ev.Event) -> None:
        self.status = {ev.RUN_SUCCEEDED: "succeeded", ev.RUN_FAILED: "failed"}.get(
            e["type"], "cancelled"
        )
        self.ended_at = e["ts"]
        self.output = e.get("output")
        self.error, self.error_type = e.get("error"), e.get("error_type")
        self.traceback = e.get("traceback")
        self.reason = e.get("reason", self.reason)
        final = "done" if self.status == "succeeded" else "failed"
        for step in self.progress.values():
            if step.state in ("running", "retrying"):
                step.state = final
        for span in self.spans.values():
            if span.status == "running":
                span.status = "cancelled" if self.status == "cancelled" else "error"
                span.end = e["ts"]

    def _span_started(self, e: ev.Event) -> None:
        span = self.spans.get(e["span_id"])
        if span is not None:  # the same step started again after a restart
            span.start, span.status, span.end = e["ts"], "running", None
            return
        parent = self.spans.get(e.get("parent_id") or "")
        self.spans[e["span_id"]] = SpanState(
            span_id=e["span_id"],
            parent_id=e.get("parent_id"),
            name=e.get("name", "?"),
            kind=e.get("kind", "component"),
            step=e.get("step", ""),
            start=e["ts"],
            input=e.get("input"),
            depth=0 if parent is None else parent.depth + 1,
        )

    def _span_retry(self, e: ev.Event) -> None:
        span = self.spans.get(e["span_id"])
        if span is not None:
            span.retries.append(
                {k: e.get(k) for k in ("attempt", "error", "error_type", "delay_s", "ts")}
            )
            span.attempts = e.get("attempt", 0) + 1

    def _span_finished(self, e: ev.Event) -> None:
        span = self.spans.get(e["span_id"])
        if span is None:
            return
        span.status = e.get("status", "ok")
        span.end = e["ts"]
        span.attempts = e.get("attempts", span.attempts)
        span.cached = bool(e.get("cached"))
        span.output = e.get("output")
        span.error, span.error_type = e.get("error"), e.get("error_type")
        span.traceback = e.get("traceback")
        span.attrs.update(e.get("attrs") or {})

    def _progress(self, e: ev.Event) -> None:
        state = e.get("state", "running")
        if state == "running":
            for step in self.progress.values():
                if step.state == "running":
                    step.state = "done"
        self.progress[e["step"]] = StepProgress(state, e.get("detail"), e["ts"])

    def _output(self, e: ev.Event) -> None:
        if "value" in e:  # a JSON value, not text
            self.emitted.append(e["value"])
            self.chunks.append(json.dumps(e["value"]))
        else:
            self.emitted.append(str(e.get("chunk", "")))
            self.chunks.append(str(e.get("chunk", "")))

    def _state_patch(self, e: ev.Event) -> None:
        from ._state import apply

        name = str(e.get("name"))
        self.published[name] = apply(self.published.get(name), e.get("patch") or [])

    def _truncated(self, e: ev.Event) -> None:
        self.truncated = True

    def _warning(self, e: ev.Event) -> None:
        self.warnings.append(str(e.get("message", "")))

    def _waiting(self, e: ev.Event) -> None:
        self.status = "waiting"
        self.wait = e.get("wait")

    def _resumed(self, e: ev.Event) -> None:
        self.status = "queued"
        self.wait = None

    def _input(self, e: ev.Event) -> None:
        self.inputs[str(e.get("name"))] = e.get("value")

    def _child_started(self, e: ev.Event) -> None:
        self.children[e["child_id"]] = {"workflow": e.get("workflow"), "status": "running"}

    def _child_ended(self, e: ev.Event) -> None:
        child = self.children.setdefault(e["child_id"], {"workflow": None})
        child.update({k: v for k, v in e.items() if k not in ("type", "ts", "id", "child_id")})


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
