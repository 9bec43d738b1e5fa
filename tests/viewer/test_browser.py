"""The viewer in Debian's Chromium: the runs panel, run outputs that outlive kernels, and /ui."""

from __future__ import annotations

from typing import Any

import nbformat
import pytest
import redis

from ..browser import artifact
from ..conftest import TEST_SECRET
from .conftest import Lab
from .support import start_run_elsewhere, wait_status

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
MIME = "application/vnd.nbflow.run+json"
TRACE = ".nbflow-trace"


def open_lab(page: Any, lab: Lab, path: str = "lab") -> None:
    page.goto(f"{lab.url}/{path}?reset&token={lab.token}")  # no layout from earlier tests
    page.wait_for_selector("#jp-main-dock-panel", timeout=60_000)


def test_runs_panel_lists_a_run_started_elsewhere_and_follows_it(
    page: Any, lab: Lab, redis_url: str, r: redis.Redis, worker_elsewhere: Any
) -> None:
    open_lab(page, lab)
    assert lab.api("GET", "api/kernels") == []  # the panel needs none
    page.click('.jp-SideBar.jp-mod-right .lm-TabBar-tab[data-id="nbflow-runs"]')
    page.wait_for_selector(".nbflow-runs-list")
    run_id = start_run_elsewhere(redis_url, TEST_SECRET, "paced", n=12, sleep_s=0.25)
    row = page.locator(f'.nbflow-run-row[data-run="{run_id}"]')
    row.wait_for(timeout=10_000)
    assert "other.ipynb" in row.inner_text()
    page.wait_for_selector(f'.nbflow-run-row[data-run="{run_id}"][data-status="running"]')
    row.click()
    page.wait_for_selector(f'{TRACE}[data-status="running"][data-live="1"]')
    page.screenshot(path=artifact("viewer-lab-panel-running.png"))
    page.wait_for_selector(f'{TRACE}[data-status="succeeded"]', timeout=30_000)
    page.wait_for_selector(f'.nbflow-run-row[data-run="{run_id}"][data-status="succeeded"]')
    assert page.locator(f"{TRACE} .nbflow-span-row:not([hidden])").count() == 13
    assert "finished step 11" in page.inner_text(f"{TRACE} .nbflow-output")
    page.locator(f"{TRACE} .nbflow-span-row .nbflow-name", has_text="step").nth(3).click()
    inspector = page.locator(f"{TRACE} .nbflow-inspector")
    inspector.wait_for()
    assert '"i": 3' in inspector.locator('[data-section="input"]').inner_text()
    page.screenshot(path=artifact("viewer-lab-panel-succeeded.png"))


def test_panel_filters_by_status(
    page: Any, lab: Lab, redis_url: str, r: redis.Redis, worker_elsewhere: Any
) -> None:
    ok = start_run_elsewhere(redis_url, TEST_SECRET, "paced", n=1, sleep_s=0.01)
    bad = start_run_elsewhere(redis_url, TEST_SECRET, "broken")
    wait_status(r, ok, {"succeeded"}), wait_status(r, bad, {"failed"})
    open_lab(page, lab)
    page.click('.jp-SideBar.jp-mod-right .lm-TabBar-tab[data-id="nbflow-runs"]')
    page.wait_for_selector(f'.nbflow-run-row[data-run="{bad}"]')
    page.select_option(".nbflow-filters select[title=status]", "failed")
    assert page.locator(".nbflow-run-row").evaluate_all("rows => rows.map(r => r.dataset.run)") == [
        bad
    ]
    page.locator(f'.nbflow-run-row[data-run="{bad}"]').click()
    page.wait_for_selector(f'{TRACE}[data-status="failed"]')
    assert "the model said no" in page.inner_text(f"{TRACE} .nbflow-error")


def snapshot_output(run_id: str, *, mode: str = "runtime", **snapshot: Any) -> Any:
    payload = {
        "version": 1,
        "run_id": run_id,
        "workflow": "paced",
        "status": "running",
        "mode": mode,
        "last_event_id": "0-0",
        "snapshot": {
            "status": "running",
            "progress": {"step 0": "running"},
            "spans": [
                {
                    "span_id": "s0",
                    "parent_id": None,
                    "name": "paced",
                    "kind": "workflow",
                    "status": "running",
                    "duration_ms": None,
                    "attempts": 1,
                    "cached": False,
                    "tokens": 0,
                },
            ],
            "usage": {"total_tokens": 0},
            "emitted_tail": "",
            "error": None,
            **snapshot,
        },
    }
    data = {MIME: payload, "text/plain": f"<nbflow run {run_id}>", "text/html": "<b>run</b>"}
    return nbformat.v4.new_output("display_data", data=data)


def events_shown(page: Any, run_id: str) -> int:
    shown = page.locator(f'.nbflow-output-renderer {TRACE}[data-run="{run_id}"]')
    return int(shown.get_attribute("data-events") or 0)


def test_run_output_stays_live_across_kernel_restart_and_page_reload(
    page: Any, lab: Lab, redis_url: str, r: redis.Redis, worker_elsewhere: Any
) -> None:
    run_id = start_run_elsewhere(redis_url, TEST_SECRET, "paced", n=80, sleep_s=0.25)
    cell = nbformat.v4.new_code_cell("run = paced.submit(n=80)", outputs=[snapshot_output(run_id)])
    local = snapshot_output(
        "localrun", mode="local", status="succeeded", emitted_tail="hello from the kernel",
        usage={"total_tokens": 42, "input_tokens": 30, "output_tokens": 12},
    )  # fmt: skip
    kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cells = [cell, nbformat.v4.new_code_cell("paced(n=1)", outputs=[local])]
    notebook = nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": kernel})
    nbformat.write(notebook, lab.root / "run.ipynb")
    open_lab(page, lab, "lab/tree/run.ipynb")
    output = f'.nbflow-output-renderer {TRACE}[data-run="{run_id}"]'
    live = f'{output}[data-live="1"][data-status="running"]'
    page.wait_for_selector(live, timeout=30_000)
    shown = page.locator(f'.nbflow-output-renderer {TRACE}[data-run="localrun"]')
    assert "42 tokens" in shown.inner_text()  # a local run's snapshot, drawn as it was left
    assert "hello from the kernel" in shown.inner_text()
    assert shown.get_attribute("data-live") == "0"
    assert shown.get_attribute("data-status") == "succeeded"

    lab.restart_kernel()
    seen = events_shown(page, run_id)
    page.wait_for_function(
        "([selector, seen]) => document.querySelector(selector).dataset.events > seen",
        arg=[output, seen],
    )
    page.screenshot(path=artifact("viewer-output-after-kernel-restart.png"))

    page.reload()
    page.wait_for_selector(live, timeout=30_000)
    page.screenshot(path=artifact("viewer-output-after-reload.png"))
    page.wait_for_selector(f'{output}[data-status="succeeded"]', timeout=60_000)
    assert page.locator(f"{output} .nbflow-span-row:not([hidden])").count() > 1
    page.locator(f"{output} .nbflow-span-row .nbflow-name", has_text="step").first.click()
    inspector = page.locator(f"{output} .nbflow-inspector")
    inspector.wait_for()
    assert '"sleep_s": 0.25' in inspector.locator('[data-section="input"]').inner_text()
    page.screenshot(path=artifact("viewer-output-inspector.png"))


def test_ui_shows_the_same_viewer(
    page: Any, api_url: str, redis_url: str, r: redis.Redis, worker_elsewhere: Any
) -> None:
    page.goto(f"{api_url}/ui")
    run_id = start_run_elsewhere(redis_url, TEST_SECRET, "paced", n=8, sleep_s=0.25)
    page.wait_for_selector(f'.nbflow-run-row[data-run="{run_id}"]', timeout=10_000)
    page.click(f'.nbflow-run-row[data-run="{run_id}"]')
    page.wait_for_selector(f'{TRACE}[data-live="1"]')
    page.wait_for_selector(f'{TRACE}[data-status="succeeded"]', timeout=30_000)
    page.wait_for_selector(f'.nbflow-run-row[data-run="{run_id}"][data-status="succeeded"]')
    assert page.locator(f"{TRACE} .nbflow-span-row:not([hidden])").count() == 9
    page.screenshot(path=artifact("viewer-ui.png"))
    page.goto(f"{api_url}/ui#run={run_id}")
    page.reload()
    page.wait_for_selector(f'{TRACE}[data-status="succeeded"]')


def test_ui_cancel_button_cancels_a_running_run(
    page: Any, api_url: str, redis_url: str, r: redis.Redis, worker_elsewhere: Any
) -> None:
    run_id = start_run_elsewhere(redis_url, TEST_SECRET, "paced", n=200, sleep_s=0.1)
    wait_status(r, run_id, {"running"})
    page.goto(f"{api_url}/ui#run={run_id}")
    page.wait_for_selector(f'{TRACE}[data-live="1"][data-status="running"]')
    page.click(f"{TRACE} .nbflow-cancel")
    page.wait_for_selector(f'{TRACE}[data-status="cancelled"]', timeout=20_000)
    assert wait_status(r, run_id, {"cancelled"}) == "cancelled"
    page.screenshot(path=artifact("viewer-ui-cancelled.png"))
