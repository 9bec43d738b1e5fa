"""Waits and child runs in the notebook's views: the saved snapshot (MIME, HTML, text), the
live summary the widget draws, and the widget's answer sent through the kernel."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import nbflow as nf
from nbflow._fold import fold
from nbflow.jupyter import display as dsp
from nbflow.jupyter.view import answer, mimebundle
from nbflow.runtime.client import Runtime
from nbflow.runtime.run import Run

from ..conftest import last_run, wait_until
from ..runtime.rt_apps import approval

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "fold_waits.json").read_text())[
    "cases"
]


@pytest.fixture
def waiting(runtime: Runtime, worker: Callable[..., Any], redis_url: str) -> Run:
    worker()
    run = approval.submit(redis_url, "view")
    wait_until(lambda: run.status() == "waiting", timeout_s=15)
    return run


def test_a_waiting_runs_snapshot_shows_the_prompt_and_how_to_answer(waiting: Run) -> None:
    bundle = mimebundle(waiting)
    snap = bundle[dsp.MIME]["snapshot"]
    assert bundle[dsp.MIME]["status"] == "waiting"
    assert snap["wait"] == {
        "kind": "input",
        "name": "approve",
        "prompt": "Publish?",
        "schema": {"type": "boolean"},
        "until": None,
        "timeout_s": None,
    }
    page = bundle["text/html"]
    assert '<span class="nbf-badge nbf-waiting">waiting</span>' in page
    assert '<div class="nbf-ask-prompt">Publish?</div>' in page
    assert f"nbflow send {waiting.id} approve JSON" in page
    assert "run.send_input(&#x27;approve&#x27;, value)" in page
    assert "  waiting for input 'approve': Publish?" in bundle["text/plain"].splitlines()


def test_an_answered_run_leaves_no_wait_in_its_snapshot(waiting: Run) -> None:
    waiting.send_input("approve", True)
    waiting.result(timeout_s=15)
    bundle = mimebundle(waiting)
    assert bundle[dsp.MIME]["snapshot"]["wait"] is None
    assert 'class="nbf-wait"' not in bundle["text/html"]
    assert "waiting" not in bundle["text/plain"]


def test_a_parents_snapshot_lists_each_child_with_status_tokens_and_cost() -> None:
    [case] = [c for c in VECTORS if c["name"].startswith("a parent starts children")]
    state = fold(case["events"], "parent")
    data = dsp.run_data(state, mode="runtime")
    assert data["snapshot"]["children"] == case["expected"]["children"]
    page = dsp.render_html(data)
    assert page.count('<tr class="nbf-succeeded"><td>research</td>') == 1
    assert "<td>c1</td><td>succeeded</td><td>1200</td><td>$0.0031</td>" in page
    assert '<tr class="nbf-failed"><td>research</td><td>c2</td>' in page
    assert "  child runs: 3 (3 ended)" in dsp.render_plain(data).splitlines()


def test_a_prompt_and_a_child_name_are_escaped_in_the_html_snapshot() -> None:
    events = [
        {"type": "run.started", "ts": 1.0},
        {"type": "child.started", "ts": 1.1, "child_id": "<c>", "workflow": "<b>x</b>"},
        {
            "type": "run.waiting",
            "ts": 1.2,
            "wait": {"kind": "input", "name": "<n>", "prompt": "<script>alert(1)</script>"},
        },
    ]
    page = dsp.render_html(dsp.run_data(fold(events, "r"), mode="runtime"))
    assert "<script>" not in page and "<b>x</b>" not in page and "<c>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_the_widgets_answer_reaches_the_run_and_a_refused_one_says_why(waiting: Run) -> None:
    refused = answer(waiting, {"kind": "input", "name": "approve", "value": "yes", "token": "t1"})
    assert refused == {
        "kind": "input_result",
        "token": "t1",
        "error": "input 'approve': 'yes' is not of type 'boolean'",
    }
    assert waiting.status() == "waiting"
    sent = answer(waiting, {"kind": "input", "name": "approve", "value": True, "token": "t2"})
    assert sent == {"kind": "input_result", "token": "t2"}
    assert waiting.result(timeout_s=15) == "published"


@nf.workflow
def local_wf() -> int:
    return 1


def test_an_in_process_run_takes_no_input_from_the_widget() -> None:
    local_wf()
    reply = answer(last_run(), {"kind": "input", "name": "x", "value": 1, "token": "t"})
    assert reply["error"] == "an in-process run takes no input"


def test_a_waiting_runs_workflow_span_is_not_recorded_as_failed(waiting: Run) -> None:
    # Views draw what the log says: a wait must not finish the workflow's span as an error.
    finished = [e for e in waiting.events(follow=False) if e["type"] == "span.finished"]
    assert all(e["status"] == "ok" for e in finished), [e.get("error") for e in finished]


def test_a_run_shown_as_a_cells_value_gets_the_updatable_live_view(waiting: Run) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    from nbflow.jupyter import view

    shell = InteractiveShell.instance()
    try:
        view.install_hooks(shell)
        assert shell.display_formatter is not None
        formatter = shell.display_formatter.ipython_display_formatter
        # Run lives in nbflow.runtime.run: a hook registered under another module's name
        # never fires, and the run's first display is a snapshot nothing updates.
        assert formatter.lookup(waiting) is view._display_run
    finally:
        InteractiveShell.clear_instance()
