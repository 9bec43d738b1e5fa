"""The MIME bundle every display of a run carries: the contract with the JupyterLab renderer."""

from __future__ import annotations

from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any

import pytest

import nbflow as nf
from nbflow import _events as ev
from nbflow._fold import fold
from nbflow._local import LocalRun
from nbflow.jupyter import display as dsp
from nbflow.jupyter.view import mimebundle

from ..conftest import last_run

SNAPSHOT_KEYS = {
    "status", "progress", "spans", "usage", "emitted_tail", "error", "wait", "children",
}  # fmt: skip
SPAN_KEYS = {
    "span_id", "parent_id", "name", "kind", "status", "duration_ms", "attempts", "cached", "tokens",
    "error",
}  # fmt: skip


@nf.component
def piece(i: int) -> int:
    nf.emit("x" * 50)
    return i


@nf.workflow
def wide(n: int) -> int:
    nf.progress("fan out")
    return sum(piece(i) for i in range(n))


@nf.workflow
def broken() -> None:
    nf.progress("doomed")
    raise ValueError("no <good> & no luck")


def test_bundle_has_the_contracts_keys_and_bounds() -> None:
    wide(300)
    bundle = mimebundle(last_run())
    assert set(bundle) == {dsp.MIME, "text/html", "text/plain"}  # no kernel: no widget
    data = bundle[dsp.MIME]
    assert set(data) == {
        "version", "run_id", "workflow", "status", "mode", "last_event_id", "snapshot",
    }  # fmt: skip
    assert data["version"] == 1 and data["mode"] == "local" and data["status"] == "succeeded"
    assert data["workflow"] == "wide" and data["run_id"] == last_run().id
    snap = data["snapshot"]
    assert set(snap) == SNAPSHOT_KEYS
    assert len(snap["spans"]) == dsp.MAX_SNAPSHOT_SPANS
    assert all(set(s) == SPAN_KEYS for s in snap["spans"])
    assert snap["spans"][0]["name"] == "wide"  # the root is kept: shallowest first
    assert len(snap["emitted_tail"]) == dsp.EMITTED_TAIL_CHARS
    assert snap["progress"] == {"fan out": "done"} and snap["error"] is None
    run = last_run()
    assert isinstance(run, LocalRun)
    assert data["last_event_id"] == run.sink.events[-1]["id"]


def test_failed_run_snapshot_shows_the_error_escaped_with_its_traceback() -> None:
    with pytest.raises(ValueError):
        broken()
    bundle = mimebundle(last_run())
    assert "no <good> & no luck" in bundle[dsp.MIME]["snapshot"]["error"]
    html = bundle["text/html"]
    assert "no &lt;good&gt; &amp; no luck" in html and "<good>" not in html
    assert "Traceback" in html and "nbf-failed" in html
    assert "<script" not in html  # a static snapshot: readable with no kernel and no JS
    assert "failed" in bundle["text/plain"] and "doomed failed" in bundle["text/plain"]


def test_running_spans_and_failures_are_kept_first_when_spans_are_cut() -> None:
    events: list[ev.Event] = [{"id": "1-0", "type": ev.RUN_STARTED, "ts": 1.0, "workflow": "w"}]
    for i in range(300):
        events.append({"id": f"2-{i}", "type": ev.SPAN_STARTED, "ts": 2.0 + i, "span_id": f"s{i}",
                       "parent_id": None, "name": f"n{i}", "kind": "component"})  # fmt: skip
    for i in range(299):
        events.append({"id": f"3-{i}", "type": ev.SPAN_FINISHED, "ts": 400.0 + i,
                       "span_id": f"s{i}", "status": "error" if i == 250 else "ok"})  # fmt: skip
    picked = [s.span_id for s in dsp.pick_spans(fold(events, "r"), 10)]
    assert "s299" in picked and "s250" in picked and len(picked) == 10


def test_runtime_run_bundle_reads_the_log(runtime: Any, worker: Callable[..., Any]) -> None:
    worker()
    run = wide.submit(3)
    run.result(timeout_s=20)
    data = run._repr_mimebundle_()[dsp.MIME]
    assert data["mode"] == "runtime" and data["status"] == "succeeded"
    assert data["workflow"] == "wide" and len(data["snapshot"]["spans"]) == 4
    assert data["last_event_id"] == list(run.events(follow=False))[-1]["id"]


HOSTILE = '<script>alert("x")</script> & \' " <img src=x onerror=alert(1)>'
SNAPSHOT_TAGS = {"style", "div", "span", "table", "tr", "th", "td", "pre", "b"}


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: set[str] = set()
        self.text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs |= {name for name, _value in attrs}

    def handle_data(self, data: str) -> None:
        self.text += data


def _parsed(markup: str) -> _Tags:
    parser = _Tags()
    parser.feed(markup)
    parser.close()
    return parser


def _hostile_span(span_id: Any, parent_id: Any) -> dict[str, Any]:
    return {key: HOSTILE for key in SPAN_KEYS} | {"span_id": span_id, "parent_id": parent_id}


def test_snapshot_html_escapes_hostile_values_in_every_field() -> None:
    snapshot = {
        "status": HOSTILE,
        "progress": {HOSTILE: HOSTILE},
        "spans": [_hostile_span(HOSTILE, None), _hostile_span(["x"], {"y": 1})],
        "usage": {"total_tokens": HOSTILE, "llm_calls": HOSTILE, "cost_usd": HOSTILE},
        "emitted_tail": HOSTILE,
        "error": HOSTILE,
        "wait": {"kind": "input", "name": HOSTILE, "prompt": HOSTILE, "until": HOSTILE},
        "children": [{k: HOSTILE for k in ("child_id", "workflow", "status", "total_tokens")}
                     | {"cost_usd": HOSTILE}],
    }  # fmt: skip
    assert set(snapshot) == SNAPSHOT_KEYS
    data = {
        "version": 1, "run_id": HOSTILE, "workflow": HOSTILE, "status": HOSTILE,
        "mode": HOSTILE, "last_event_id": HOSTILE, "snapshot": snapshot,
    }  # fmt: skip
    parsed = _parsed(dsp.render_html(data, traceback=HOSTILE))
    assert set(parsed.tags) <= SNAPSHOT_TAGS  # no <script>, no <img>: nothing injected
    assert parsed.attrs <= {"class", "style", "data-nbflow-run"}
    # Every hostile value is still shown, as text: 20 fields hold it (attributes aside).
    assert parsed.text.count(HOSTILE) >= 20


def test_a_hostile_attempts_value_in_the_log_is_shown_as_text() -> None:
    events: list[ev.Event] = [
        {"id": "1-0", "type": ev.RUN_STARTED, "ts": 1.0, "workflow": "w"},
        {"id": "2-0", "type": ev.SPAN_STARTED, "ts": 2.0, "span_id": "s", "parent_id": None,
         "name": "n", "kind": "component"},
        {"id": "3-0", "type": ev.SPAN_FINISHED, "ts": 3.0, "span_id": "s", "status": "ok",
         "attempts": "<img src=x onerror=alert(1)>"},
    ]  # fmt: skip
    data = dsp.run_data(fold(events, "r"), mode="runtime")
    parsed = _parsed(dsp.render_html(data))
    assert "img" not in parsed.tags
    assert "<img src=x onerror=alert(1)>" in parsed.text
