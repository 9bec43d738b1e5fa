"""Traces: spans and events as DataFrames, the timeline figure, token usage, the text table."""

from __future__ import annotations

import contextlib
import json

import pandas as pd
import plotly.graph_objects as go
import pytest

import nbflow as nf
from nbflow._cache import local_cache
from nbflow._context import current
from nbflow._events import parse_id
from nbflow.frames import STATUS_COLORS

DESIGN_COLUMNS = [
    "run_id", "span_id", "parent_id", "name", "kind", "status", "start", "end", "duration_ms",
    "attempts", "cached", "model", "input_tokens", "output_tokens", "total_tokens", "error",
]  # fmt: skip


@pytest.fixture(autouse=True)
def clean_state():
    local_cache.clear()
    nf.set_testing(True)
    yield
    nf.set_testing(False)
    local_cache.clear()


def chat_model(model: str, input_tokens: int, output_tokens: int) -> nf.Component:
    def chat(prompt: str) -> str:
        attrs = current().attrs
        attrs["gen_ai.request.model"] = model
        attrs["gen_ai.usage.input_tokens"] = input_tokens
        attrs["gen_ai.usage.output_tokens"] = output_tokens
        return f"{model}: {prompt}"

    return nf.Component(chat, name=f"chat-{model}", kind="llm")


@pytest.fixture
def mixed_trace() -> nf.Trace:
    """A run with ok, cached, retried, failed and llm spans."""
    attempts: list[int] = []

    @nf.component(cache=True)
    def lookup(key: str) -> str:
        return key.upper()

    @nf.component(retry={"attempts": 3, "on": ConnectionError})
    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("reset")
        return "ok"

    @nf.component
    def broken() -> None:
        raise ValueError("bad")

    small = chat_model("small", 10, 5)
    large = chat_model("large", 100, 50)

    @nf.workflow
    def flow() -> str:
        lookup("a")
        lookup("a")
        flaky()
        with contextlib.suppress(ValueError):
            broken()
        small("hi")
        small("again")
        large("hello")
        return "done"

    flow()
    return nf.last_run().trace()


# --- spans -------------------------------------------------------------------------


def test_spans_frame_has_at_least_the_design_columns(mixed_trace):
    spans = mixed_trace.spans
    assert isinstance(spans, pd.DataFrame)
    assert set(DESIGN_COLUMNS) <= set(spans.columns)
    assert list(spans.columns[: len(DESIGN_COLUMNS) - 1]) == DESIGN_COLUMNS[:-1]


def test_spans_frame_values_describe_each_span(mixed_trace):
    spans = mixed_trace.spans.set_index("name", drop=False)
    assert set(spans["run_id"]) == {mixed_trace.run_id}
    assert spans["span_id"].is_unique
    assert spans.loc["flow", "kind"] == "workflow"
    assert spans.loc["flaky", "kind"] == "component"
    assert set(spans.loc["chat-small", "kind"]) == {"llm"}
    assert spans.loc["flaky", "attempts"] == 3
    assert spans.loc["broken", "status"] == "error"
    assert spans.loc["broken", "error"] == "ValueError: bad"
    assert list(spans.loc["lookup", "cached"]) == [False, True]
    assert spans.loc["chat-large", "model"] == "large"
    assert spans.loc["flow", "status"] == "ok"


def test_span_times_are_utc_timestamps_and_durations_are_milliseconds(mixed_trace):
    spans = mixed_trace.spans
    assert str(spans["start"].dt.tz) == "UTC"
    assert str(spans["end"].dt.tz) == "UTC"
    assert (spans["end"] >= spans["start"]).all()
    expected = (spans["end"] - spans["start"]).dt.total_seconds() * 1000
    assert ((spans["duration_ms"] - expected).abs() < 0.01).all()


def test_span_token_columns_come_from_gen_ai_usage_attributes(mixed_trace):
    llm = mixed_trace.spans[mixed_trace.spans["kind"] == "llm"]
    assert list(llm["input_tokens"]) == [10, 10, 100]
    assert list(llm["output_tokens"]) == [5, 5, 50]
    assert list(llm["total_tokens"]) == [15, 15, 150]
    others = mixed_trace.spans[mixed_trace.spans["kind"] != "llm"]
    assert (others["total_tokens"] == 0).all()


def test_usage_totals_tokens_of_llm_spans(mixed_trace):
    usage = mixed_trace.usage
    assert usage["input_tokens"] == 120
    assert usage["output_tokens"] == 60
    assert usage["total_tokens"] == 180
    assert usage["llm_calls"] == 3


def test_usage_leaves_out_cached_llm_calls():
    chat = chat_model("m", 7, 3).with_cache()

    @nf.workflow
    def flow() -> None:
        chat("same")
        chat("same")

    flow()
    trace = nf.last_run().trace()
    assert list(trace.spans["cached"]) == [False, False, True]
    assert (trace.usage["total_tokens"], trace.usage["llm_calls"]) == (10, 1)


def test_usage_of_a_run_without_llm_calls_is_zero():
    nf.component(lambda: None, name="noop")()
    usage = nf.last_run().trace().usage
    assert (usage["total_tokens"], usage["llm_calls"]) == (0, 0)


def test_tokens_by_model_groups_llm_spans(mixed_trace):
    by_model = mixed_trace.tokens_by_model()
    assert by_model.loc["small", "total_tokens"] == 30
    assert by_model.loc["small", "calls"] == 2
    assert list(by_model.index) == ["large", "small"]


def test_retries_by_component_and_slowest(mixed_trace):
    retries = mixed_trace.retries_by_component()
    assert retries.loc["flaky", "retries"] == 2
    assert retries.loc["broken", "errors"] == 1
    assert len(mixed_trace.slowest(2)) == 2


# --- events ------------------------------------------------------------------------


def test_events_frame_is_the_log_ordered_by_id(mixed_trace):
    events = mixed_trace.events
    assert list(events.columns) == ["run_id", "id", "type", "ts", "span_id", "data"]
    ids = [parse_id(i) for i in events["id"]]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert events["type"].iloc[0] == "run.started"
    assert events["type"].iloc[-1] == "run.succeeded"
    assert list(events["id"]) == [e["id"] for e in mixed_trace.raw_events]


def test_events_frame_keeps_each_events_payload_as_json(mixed_trace):
    events = mixed_trace.events
    retries = events[events["type"] == "span.retry"]
    assert len(retries) == 2
    payloads = [json.loads(d) for d in retries["data"]]
    assert [p["attempt"] for p in payloads] == [1, 2]
    assert all(p["error"] == "ConnectionError: reset" for p in payloads)


def test_spans_are_a_fold_of_the_events(mixed_trace):
    kinds = mixed_trace.events["type"].value_counts()
    assert kinds["span.started"] == kinds["span.finished"] == len(mixed_trace.spans)


# --- timeline ------------------------------------------------------------------------


def test_timeline_is_a_plotly_figure_with_one_bar_per_span(mixed_trace):
    fig = mixed_trace.timeline()
    assert isinstance(fig, go.Figure)
    assert all(isinstance(t, go.Bar) for t in fig.data)
    assert sum(len(t.y) for t in fig.data) == len(mixed_trace.spans)


def test_timeline_bars_are_coloured_by_status(mixed_trace):
    fig = mixed_trace.timeline()
    by_status = {t.name: t for t in fig.data}
    assert set(by_status) == {"ok", "error"}
    for status, bar in by_status.items():
        assert bar.marker.color == STATUS_COLORS[status]
    assert any("broken" in label for label in by_status["error"].y)


def test_timeline_marks_cached_spans_and_retries(mixed_trace):
    ok = next(t for t in mixed_trace.timeline().data if t.name == "ok")
    names = [label.split(" [")[0].strip() for label in ok.y]
    rows = list(zip(names, ok.text, ok.marker.pattern.shape, strict=True))
    assert [(text, shape) for name, text, shape in rows if name == "lookup"] == [
        ("", ""),
        ("cached", "/"),
    ]
    assert [(text, shape) for name, text, shape in rows if name == "flaky"] == [("3 attempts", "")]


def test_timeline_of_a_trace_without_spans_is_an_empty_figure():
    trace = nf.Trace("empty", [])
    fig = trace.timeline()
    assert isinstance(fig, go.Figure)
    assert len(fig.data) == 0


# --- table ---------------------------------------------------------------------------


def test_table_is_the_span_tree_as_text(mixed_trace):
    text = mixed_trace.table()
    lines = text.splitlines()
    assert lines[0].split() == ["run", mixed_trace.run_id, "flow", "succeeded"]
    assert lines[1].lstrip().startswith("flow") and "workflow" in lines[1]
    flaky = next(line for line in lines if "flaky" in line)
    assert "3 attempts" in flaky
    assert flaky.index("flaky") > lines[1].index("flow")
    assert "cached" in [line for line in lines if "lookup" in line][1]
    broken = next(line for line in lines if "broken" in line)
    assert "error" in broken and "ValueError: bad" in broken
    assert "150 tokens" in next(line for line in lines if "chat-large" in line)
    assert len(lines) == 1 + len(mixed_trace.spans)


def test_repr_names_run_status_and_counts(mixed_trace):
    text = repr(mixed_trace)
    assert mixed_trace.run_id in text
    assert "status=succeeded" in text
    assert f"spans={len(mixed_trace.spans)}" in text


# --- what the span inspector shows, from a real in-process run ---------------------------


def test_each_retried_attempt_keeps_its_error_and_a_traceback_through_the_users_code():
    calls: list[int] = []

    @nf.component(retry={"attempts": 3, "on": ConnectionError})
    def fetch(url: str) -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError(f"reset {len(calls)}")
        return "page"

    fetch("https://example.org")
    (span,) = nf.last_run().trace().state.spans.values()
    assert [r["attempt"] for r in span.retries] == [1, 2]
    assert [r["error"] for r in span.retries] == [
        "ConnectionError: reset 1",
        "ConnectionError: reset 2",
    ]
    for retry in span.retries:
        assert retry["error_type"] == "ConnectionError"
        assert "in fetch" in retry["traceback"] and "ConnectionError" in retry["traceback"]
        assert retry["delay_s"] == 0 and retry["ts"] >= span.start
    assert (span.status, span.attempts, span.error, span.traceback) == ("ok", 3, None, None)
    assert span.input == {"url": "https://example.org"} and span.output == "page"


def test_a_cache_miss_and_its_hit_carry_the_same_cache_key():
    @nf.component(cache=True)
    def lookup(key: str) -> str:
        return key.upper()

    @nf.workflow
    def flow() -> None:
        lookup("a")
        lookup("a")
        lookup("b")

    flow()
    spans = nf.last_run().trace().spans.set_index("span_id")
    looked = spans[spans["name"] == "lookup"]
    assert list(looked["cached"]) == [False, True, False]
    keys = list(looked["cache_key"])
    assert keys[0] == keys[1] and keys[0] != keys[2]
    assert all(isinstance(k, str) and len(k) >= 16 for k in keys)
    assert spans.loc[spans["name"] == "flow", "cache_key"].isna().all()


def test_tokens_and_cost_roll_up_to_every_parent_and_the_run_equals_its_root():
    @nf.component
    def plan() -> None:
        chat_model("m", 10, 5)("a")
        chat_model("m", 20, 1)("b")

    @nf.workflow
    def flow() -> None:
        plan()
        chat_model("n", 3, 4)("c")

    flow()
    state = nf.last_run().trace().state
    by_name = {s.name: s for s in state.spans.values()}
    assert by_name["plan"].tokens == 0 and by_name["plan"].rollup["tokens"] == 36
    assert by_name["flow"].rollup["tokens"] == 43 == nf.last_run().trace().usage["total_tokens"]
    assert by_name["chat-n"].rollup == {
        "input_tokens": 3,
        "output_tokens": 4,
        "tokens": 7,
        "cost_usd": 0.0,
    }


def test_output_is_the_return_value_and_emitted_the_streamed_text():
    @nf.workflow
    def flow() -> dict[str, int]:
        nf.emit("Hello, ")
        nf.emit({"n": 1})
        return {"n": 2}

    flow()
    trace = nf.last_run().trace()
    assert trace.output == {"n": 2}
    assert trace.emitted == 'Hello, {"n": 1}'


def test_progress_steps_are_timed_by_the_fold():
    @nf.workflow
    def flow() -> None:
        nf.progress("later", state="pending")
        nf.progress("first", detail="go")
        nf.progress("second")

    flow()
    steps = nf.last_run().trace().state.steps
    first, second, later = steps["first"], steps["second"], steps["later"]
    assert (first.state, first.detail, second.state, later.state) == (
        "done",
        "go",
        "done",
        "pending",
    )
    assert first.start is not None and first.end == second.start
    assert second.end is not None and second.end >= second.start
    assert first.duration_ms == (first.end - first.start) * 1000
    assert later.start is None and later.end is None
