"""What the fold keeps per span and per progress step, and how it writes them as JSON.

The JSON forms (``SpanState.to_dict``, ``StepState.to_dict``) are the shared
specification: ``extension/src/fold.ts`` writes the same keys with the same
values for the same events (tests/vectors hold the cases both must meet).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from . import _events as ev

INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
COST = "nbflow.cost_usd"
CACHE_KEY = "nbflow.cache_key"
RETRY_FIELDS = ("attempt", "error_type", "error", "traceback", "delay_s", "ts")
_NOT_RETRY_FIELDS = frozenset({"type", "id", "span_id"})


def ts_of(event: ev.Event) -> float | None:
    """An event's time; None when it has none (order comes from the log, not from ``ts``)."""
    return number(event.get("ts"))


def number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


@dataclass(frozen=True)
class Spend:
    """What one span.finished says was spent: the runtime's metadata counts the same
    (nbflow/runtime/writer.py), so a run's usage is equal in both."""

    input_tokens: int
    output_tokens: int
    cost_usd: float

    @classmethod
    def of(cls, event: ev.Event) -> Spend | None:
        # Each finish is one call that was made: a span finished again by a later
        # attempt (its result could not be recorded) spent again. A cache hit spent nothing.
        attrs = event.get("attrs")
        if event.get("cached") is True or not isinstance(attrs, dict):
            return None
        inp, out = number(attrs.get(INPUT_TOKENS)), number(attrs.get(OUTPUT_TOKENS))
        if inp is None and out is None:
            return None
        return cls(int(inp or 0), int(out or 0), number(attrs.get(COST)) or 0.0)


def new_rollup() -> dict[str, Any]:
    return {"input_tokens": 0, "output_tokens": 0, "tokens": 0, "cost_usd": 0.0}


def add_spend(totals: dict[str, Any], spend: Spend) -> None:
    totals["input_tokens"] += spend.input_tokens
    totals["output_tokens"] += spend.output_tokens
    totals["tokens"] += spend.input_tokens + spend.output_tokens
    totals["cost_usd"] += spend.cost_usd


def retry_entry(event: ev.Event) -> dict[str, Any]:
    """One failed attempt as span.retry tells it: the named fields always, and whatever
    else the event carries."""
    entry = {k: v for k, v in event.items() if k not in _NOT_RETRY_FIELDS}
    for key in RETRY_FIELDS:
        entry.setdefault(key, None)
    entry["ts"] = ts_of(event)
    return entry


@dataclass
class SpanState:
    """One span: a component, llm or workflow call, across every attempt of the run.

    ``input_tokens``, ``output_tokens`` and ``cost_usd`` are its own spend, summed
    over its finishes; ``rollup`` adds every span below it.
    """

    span_id: str
    parent_id: str | None
    name: str
    kind: str
    step: str = ""
    status: str = "running"
    start: float | None = None
    end: float | None = None
    attempts: int = 1
    restarts: int = 0  # times a later attempt of the run started it again
    cached: bool = False
    input: Any = None
    output: Any = None
    error: str | None = None
    error_type: str | None = None
    traceback: str | None = None
    retries: list[dict[str, Any]] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)
    depth: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    rollup: dict[str, Any] = field(default_factory=new_rollup)

    @property
    def duration_ms(self) -> float | None:
        if self.start is None or self.end is None:
            return None
        return (self.end - self.start) * 1000

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def model(self) -> str | None:
        model = self.attrs.get("gen_ai.response.model") or self.attrs.get("gen_ai.request.model")
        return None if model is None else str(model)

    @property
    def cache_key(self) -> str | None:
        key = self.attrs.get(CACHE_KEY)
        return None if key is None else str(key)

    def spent(self, spend: Spend) -> None:
        self.input_tokens += spend.input_tokens
        self.output_tokens += spend.output_tokens
        self.cost_usd += spend.cost_usd

    def marks(self) -> list[str]:
        """What a one-line view notes beside a span: retries, cache hits, tokens."""
        marks = []
        if self.attempts > 1:
            marks.append(f"{self.attempts} attempts")
        if self.cached:
            marks.append("cached")
        if self.tokens:
            marks.append(f"{self.tokens} tokens")
        return marks

    def to_dict(self) -> dict[str, Any]:
        return {
            **{k: getattr(self, k) for k in SPAN_FIELDS},
            "retries": [dict(r) for r in self.retries],
            "attrs": dict(self.attrs),
            "rollup": dict(self.rollup),
        }


SPAN_FIELDS = (
    "span_id", "parent_id", "name", "kind", "step", "status", "start", "end", "duration_ms",
    "depth", "attempts", "restarts", "cached", "cache_key", "input", "output", "error",
    "error_type", "traceback", "model", "input_tokens", "output_tokens", "tokens", "cost_usd",
)  # fmt: skip


def start_order(span: SpanState) -> float:
    """A sort key for spans by start; a span whose start the log lacks comes first."""
    return -math.inf if span.start is None else span.start


@dataclass
class StepState:
    """A named progress step (``nf.progress``): its state, detail and when it ran."""

    name: str
    state: str
    detail: Any = None
    start: float | None = None
    end: float | None = None

    @property
    def duration_ms(self) -> float | None:
        if self.start is None or self.end is None:
            return None
        return (self.end - self.start) * 1000

    def to_dict(self) -> dict[str, Any]:
        keys = ("name", "state", "detail", "start", "end", "duration_ms")
        return {k: getattr(self, k) for k in keys}
