"""``nbflow send`` and the waits in ``nbflow runs`` / ``nbflow logs``: real processes, a real
runtime (the session's server, workers in this process)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from nbflow.runtime.client import Runtime
from nbflow.runtime.run import Run

from .conftest import ROOT, TEST_SECRET, wait_until
from .runtime.rt_apps import approval


def nbflow(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NBFLOW_REDIS_URL": redis_url, "NBFLOW_SECRET": TEST_SECRET.decode()}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "nbflow.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def waiting(runtime: Runtime, worker: Callable[..., Any], redis_url: str) -> Run:
    worker()
    run = approval.submit(redis_url, "cli")
    wait_until(lambda: run.status() == "waiting", timeout_s=15)
    return run


def test_runs_and_logs_show_what_a_waiting_run_waits_for(waiting: Run, redis_url: str) -> None:
    listed = nbflow(redis_url, "runs")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    [row] = [i for i, line in enumerate(lines) if line.startswith(waiting.id)]
    assert "waiting" in lines[row]
    assert lines[row + 1].strip() == "↳ waits for input 'approve': Publish?"

    logs = nbflow(redis_url, "logs", waiting.id)
    assert logs.returncode == 0, logs.stderr  # waiting is not a failure
    hint = f"answer with: nbflow send {waiting.id} approve JSON"
    assert f"⏸ waiting for input 'approve': Publish?; {hint}" in logs.stdout
    assert logs.stdout.rstrip().endswith(f"waiting for input 'approve': Publish?; {hint}")


def test_runs_filters_before_the_limit_and_pages_by_cursor(
    runtime: Runtime, redis_url: str
) -> None:
    old = [approval.submit(redis_url, f"old{i}") for i in range(2)]  # no worker: they stay queued
    for run in old:
        run.cancel()
    newer = [approval.submit(redis_url, f"new{i}") for i in range(3)]
    first = nbflow(redis_url, "runs", "--status", "cancelled", "--limit", "1")
    assert first.returncode == 0, first.stderr
    assert [line.split()[0] for line in first.stdout.splitlines()[1:-1]] == [old[1].id]
    more = first.stdout.splitlines()[-1]
    assert more.startswith("more: nbflow runs --cursor ") and more.endswith(
        "(with the same filters)"
    )
    cursor = more.split()[4]
    rest = nbflow(redis_url, "runs", "--status", "cancelled", "--limit", "1", "--cursor", cursor)
    assert [line.split()[0] for line in rest.stdout.splitlines()[1:]] == [old[0].id]
    recent = nbflow(redis_url, "runs", "--since", "3600", "--workflow", "approval")
    assert [line.split()[0] for line in recent.stdout.splitlines()[1:]] == [
        r.id for r in reversed(old + newer)
    ]


def test_send_parses_json_answers_the_run_and_it_goes_on(waiting: Run, redis_url: str) -> None:
    sent = nbflow(redis_url, "send", waiting.id, "approve", "true")
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.startswith(f"run {waiting.id}: input 'approve' sent; the run is ")
    assert waiting.result(timeout_s=15) == "published"
    logs = nbflow(redis_url, "logs", waiting.id).stdout
    assert "← input 'approve': true" in logs and "▶ resumed (input)" in logs


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("yes", "nbflow send: VALUE is not JSON (Expecting value: line 1 column 1 (char 0)): "
         "'yes'; a string needs its JSON quotes, e.g. '\"yes\"'"),
        ('"yes"', "nbflow send: input 'approve': 'yes' is not of type 'boolean'"),
    ],
)  # fmt: skip
def test_a_bad_value_is_one_line_on_stderr_exit_2_and_the_run_still_waits(
    waiting: Run, redis_url: str, value: str, message: str
) -> None:
    refused = nbflow(redis_url, "send", waiting.id, "approve", value)
    assert (refused.returncode, refused.stdout) == (2, "")
    assert refused.stderr.splitlines() == [message]
    assert waiting.status() == "waiting"


def test_a_second_answer_another_name_and_an_unknown_run_are_refused(
    waiting: Run, redis_url: str
) -> None:
    other = nbflow(redis_url, "send", waiting.id, "publish", "true")
    assert other.returncode == 2
    assert other.stderr.strip() == (
        f"nbflow send: run {waiting.id} waits for input 'approve', not 'publish'"
    )
    assert nbflow(redis_url, "send", waiting.id, "approve", "false").returncode == 0
    again = nbflow(redis_url, "send", waiting.id, "approve", "true")
    assert again.returncode == 2
    assert "not waiting for input" in again.stderr or "answered already" in again.stderr
    assert waiting.result(timeout_s=15) == "dropped"
    unknown = nbflow(redis_url, "send", "0123456789abcdef", "approve", "true")
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("nbflow send: no run '0123456789abcdef'")
    assert "Traceback" not in unknown.stderr + again.stderr + other.stderr


def test_the_terminal_view_tells_children_waits_resumes_and_warnings_one_line_each() -> None:
    import io
    import json

    from nbflow.console import LivePrinter, summary

    vectors = json.loads((ROOT / "tests" / "vectors" / "fold_waits.json").read_text())
    [case] = [c for c in vectors["cases"] if c["name"].startswith("a parent starts children")]
    out = io.StringIO()
    state = LivePrinter("parent", out).feed(case["events"])
    lines = [line.split("  ", 1)[1] for line in out.getvalue().splitlines()]
    assert lines[2:] == [
        "  ⑂ child run c1 (research) started",
        "  ⑂ child run c2 (research) started",
        "  ⑂ child run c3 (summarize) started",
        "⏸ waiting for 3 child runs",
        "  ⑂ child run c1 (research) succeeded · 1200 tokens · $0.0031",
        "  ⑂ child run c2 (research) failed",
        "  ⑂ child run c3 (summarize) succeeded · 40 tokens · $0.0001",
        "▶ resumed (children)",
        "⚠ the worker's event loop was blocked for 6.0 s",
        "run.started",
    ]
    assert summary(state).splitlines()[-1] == "child runs: 3 (3 ended)"
