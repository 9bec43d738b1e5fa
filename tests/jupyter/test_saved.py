"""Saved notebooks tell the truth: a run's output ends as the run's end (MIME data, HTML
snapshot, text), with a real kernel (nbclient, then nbconvert's HTML in Chromium)."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import nbformat
import pytest
from IPython.core.interactiveshell import InteractiveShell
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

import nbflow as nf
from nbflow import _events as ev
from nbflow._fold import fold
from nbflow._local import LocalRun
from nbflow.jupyter import display as dsp
from nbflow.jupyter import view
from nbflow.runtime.client import Runtime
from nbflow.runtime.run import Run

from ..browser import CHROMIUM_ARGS, artifact, require_chromium
from ..conftest import TEST_SECRET, wait_until

DROPPED_ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL")
SETUP = "import time\nimport nbflow as nf\n%load_ext nbflow"
COMPONENTS = """%%component
def ask(topic):
    client = nf.openai.default_client()
    reply = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": f"One line on {topic}."}]
    )
    return reply.choices[0].message.content

def check(text):
    raise ValueError("too short: " + text[:8])
"""
AGENT = """@nf.workflow
def agent(topic, pause_s):
    nf.progress("ask")
    answer = ask(topic)
    nf.progress("check")
    try:
        check(answer)
    except ValueError:
        pass
    time.sleep(pause_s)
    return answer
"""


def kernel_env(redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
    env.update(
        NBFLOW_REDIS_URL=redis_url,
        NBFLOW_SECRET=TEST_SECRET.decode(),
        JPY_SESSION_NAME="saved.ipynb",
    )
    return env


# --- the snapshot -------------------------------------------------------------------
class _Rows(HTMLParser):
    """The span table's rows as text, cell by cell."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._in_spans = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._in_spans = ("class", "nbf-spans") in attrs
        elif self._in_spans and tag == "tr":
            self.rows.append([])
        elif self._in_spans and tag == "td":
            self.rows[-1].append("")

    def handle_data(self, data: str) -> None:
        if self._in_spans and self.rows and self.rows[-1]:
            self.rows[-1][-1] += data


def span_rows(markup: str) -> list[list[str]]:
    parser = _Rows()
    parser.feed(markup)
    return [row for row in parser.rows if row]


def test_the_html_snapshot_is_an_indented_tree_with_times_tokens_and_errors() -> None:
    def span(i: str, parent: str | None, name: str, kind: str = "component") -> ev.Event:
        return {"type": ev.SPAN_STARTED, "ts": 1.0, "span_id": i, "parent_id": parent,
                "name": name, "kind": kind}  # fmt: skip

    usage = {"gen_ai.usage.input_tokens": 1200, "gen_ai.usage.output_tokens": 34}
    events: list[ev.Event] = [
        {"type": ev.RUN_STARTED, "ts": 1.0, "workflow": "agent"},
        span("w", None, "agent", "workflow"),
        span("a", "w", "ask"),
        span("l", "a", "chat gpt-4o-mini", "llm"),
        {"type": ev.SPAN_FINISHED, "ts": 1.25, "span_id": "l", "status": "ok", "attrs": usage},
        {"type": ev.SPAN_FINISHED, "ts": 1.3, "span_id": "a", "status": "ok"},
        span("c", "w", "check"),
        {"type": ev.SPAN_FINISHED, "ts": 1.31, "span_id": "c", "status": "error",
         "error": "ValueError: too short"},
        {"type": ev.SPAN_FINISHED, "ts": 75.0, "span_id": "w", "status": "ok"},
        {"type": ev.RUN_SUCCEEDED, "ts": 75.0, "output": "x"},
    ]  # fmt: skip
    for i, event in enumerate(events):
        event["id"] = f"{i + 1}-0"
    html = dsp.bundle(dsp.run_data(fold(events, "r1"), mode="runtime"))["text/html"]
    rows = span_rows(html)
    nbsp = "\u00a0"
    assert [row[0] for row in rows] == [
        "agent",
        f"└{nbsp}ask",
        f"{nbsp * 3}└{nbsp}chat gpt-4o-mini",
        f"└{nbsp}checkValueError: too short",  # the error under the span's name
    ]
    assert [row[3] for row in rows] == ["1 m 14 s", "300 ms", "250 ms", "310 ms"]
    assert [row[5] for row in rows] == ["", "", "1,234", ""]
    assert [row[2] for row in rows] == ["ok", "ok", "ok", "error"]
    assert 'class="nbf-span-error">ValueError: too short</div>' in html


def test_the_display_formatter_is_registered_on_the_real_run_classes() -> None:
    shell = InteractiveShell.instance()
    view.install_hooks(shell)
    assert shell.display_formatter is not None
    formatter = shell.display_formatter.ipython_display_formatter
    assert formatter.lookup_by_type(Run) is view._display_run
    assert formatter.lookup_by_type(LocalRun) is view._display_run


def test_an_in_process_run_as_a_cells_last_expression_is_shown_live() -> None:
    shell = InteractiveShell.instance()
    view.install_hooks(shell)

    @nf.workflow
    def tiny() -> int:
        return 1

    tiny()
    run = nf.last_run()
    before = len(view.views())
    assert shell.display_formatter is not None
    shell.display_formatter.format(run)
    assert len(view.views()) == before + 1 and view.views()[-1].run is run


# --- a real kernel ---------------------------------------------------------------------
@pytest.fixture
def kernel(redis_url: str, runtime: Runtime) -> Iterator[Any]:
    km = KernelManager(kernel_name="python3")
    km.start_kernel(env=kernel_env(redis_url))
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    yield kc
    kc.stop_channels()
    km.shutdown_kernel(now=True)
    km.cleanup_resources()


def run_cell(kc: Any, code: str) -> list[dict[str, Any]]:
    """Execute ``code``; the iopub messages it caused (its own, by parent)."""
    seen: list[dict[str, Any]] = []
    reply = kc.execute_interactive(code, timeout=60, output_hook=seen.append)
    assert reply["content"]["status"] == "ok", reply["content"]
    return seen


def displays(messages: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [m["content"] for m in messages if m["msg_type"] == kind]


@pytest.mark.slow
def test_a_final_update_sent_while_no_cell_ran_is_sent_again_by_the_next_cell(
    kernel: Any, runtime: Runtime, worker: Callable[..., Any]
) -> None:
    worker()
    run_cell(kernel, SETUP + "\n" + "@nf.workflow\ndef nap(s):\n    time.sleep(s)\n    return s")
    shown = displays(run_cell(kernel, "run = nap.submit(1.0)\nrun"), "display_data")
    assert shown[0]["data"][dsp.MIME]["status"] in ("queued", "running")
    display_id = shown[0]["transient"]["display_id"]
    run_id = shown[0]["data"][dsp.MIME]["run_id"]
    # No cell runs now: the kernel's view sees the end and updates the display under the
    # finished cell, which nbclient (and a front end routing updates by cell) drops.
    late = None
    deadline = time.monotonic() + 30
    while late is None and time.monotonic() < deadline:
        msg = kernel.get_iopub_msg(timeout=30)
        if msg["msg_type"] == "update_display_data":
            late = msg["content"]
    assert late is not None and late["data"][dsp.MIME]["status"] == "succeeded"
    assert runtime.attach(run_id).status() == "succeeded"

    again = displays(run_cell(kernel, "pass"), "update_display_data")
    assert [u["transient"]["display_id"] for u in again] == [display_id]
    assert again[0]["data"][dsp.MIME]["status"] == "succeeded"
    assert "succeeded" in again[0]["data"]["text/plain"].splitlines()[0]
    assert displays(run_cell(kernel, "pass"), "update_display_data") == []  # once only


def run_outputs(book: Any) -> list[dict[str, Any]]:
    return [
        out["data"]
        for cell in book.cells
        for out in cell.get("outputs", [])
        if dsp.MIME in out.get("data", {})
    ]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_saved_then_exported_notebook_shows_each_run_as_it_ended(
    redis_url: str,
    runtime: Runtime,
    worker: Callable[..., Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in DROPPED_ENV:
        monkeypatch.delenv(name, raising=False)  # the workers here call the offline model
    worker()
    cells = [
        SETUP,
        COMPONENTS,
        AGENT,
        "run = agent.submit('saved notebooks', 1.0)\nrun",
        "run.result(timeout_s=60)\nother = agent.submit('attached views', 1.5)",
        "%nbflow attach",
        "other.result(timeout_s=60)",
    ]
    book = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(book, timeout=120, kernel_name="python3").execute(env=kernel_env(redis_url))
    path = tmp_path / "saved.ipynb"
    nbformat.write(book, path)

    saved = run_outputs(nbformat.read(path, as_version=4))
    assert len(saved) == 2
    for data in saved:
        assert set(data) == {dsp.MIME, "text/html", "text/plain"}  # no widget nobody drew
        assert data[dsp.MIME]["status"] == "succeeded"
        assert data[dsp.MIME]["snapshot"]["progress"] == {"ask": "done", "check": "done"}
        assert re.match(r"<nbflow run \w+ 'agent' succeeded \(runtime\)>", data["text/plain"])
        assert 'nbf-badge nbf-succeeded">succeeded<' in data["text/html"]
        rows = span_rows(data["text/html"])
        assert [row[0].split("\u00a0")[-1][:5] for row in rows[:2]] == ["agent", "ask"]
        assert rows[1][0].startswith("└") and rows[2][0].startswith("\u00a0" * 3 + "└")
        llm = [row for row in rows if row[1] == "llm"]
        assert len(llm) == 1 and int(llm[0][5].replace(",", "")) > 0  # its tokens
        check = [row for row in rows if "check" in row[0]]
        assert check[0][2] == "error" and "ValueError: too short: " in check[0][0]
    exported = export_html(path)
    show_in_chromium(exported)


def export_html(path: Path) -> Path:
    from nbconvert import HTMLExporter

    body, _resources = HTMLExporter().from_filename(str(path))
    out = path.with_suffix(".html")
    out.write_text(body)
    return out


def show_in_chromium(page_file: Path) -> None:
    from playwright.sync_api import sync_playwright

    binary = require_chromium()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=binary, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1400})
            page.goto(page_file.as_uri())
            runs = page.locator(".nbf-run.nbf-static")
            wait_until(lambda: runs.count() == 2, timeout_s=10)
            for i in range(2):
                assert runs.nth(i).locator(".nbf-head .nbf-badge").text_content() == "succeeded"
                assert runs.nth(i).locator(".nbf-span-error").count() == 1
                shown = runs.nth(i).inner_text()
                assert "running" not in shown and "queued" not in shown and "└" in shown
            page.screenshot(path=artifact("saved_notebook_nbconvert.png"), full_page=True)
        finally:
            browser.close()
