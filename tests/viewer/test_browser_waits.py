"""Answering waiting runs in Debian's Chromium: the form in /ui (each kind of field), in
JupyterLab's runs panel and in a notebook output; child runs under their parent."""

from __future__ import annotations

from typing import Any

import nbformat
import pytest
import redis

from nbflow.runtime.client import Runtime

from ..browser import artifact
from ..conftest import TEST_SECRET
from .conftest import Lab
from .support import start_run_elsewhere, wait_status
from .test_browser import TRACE, open_lab, snapshot_output

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def ask(name: str) -> str:
    return f'{TRACE}[data-status="waiting"] .nbflow-ask[data-input="{name}"]'


def test_ui_form_answers_each_kind_of_field_and_shows_refusals_next_to_it(
    page: Any, api_url: str, redis_url: str, r: redis.Redis, runtime: Runtime,
    worker_elsewhere: Any,
) -> None:  # fmt: skip
    run_id = start_run_elsewhere(redis_url, TEST_SECRET, "approval", details=True)
    wait_status(r, run_id, {"waiting"})
    page.goto(f"{api_url}/ui")
    row = page.locator(f'.nbflow-run-row[data-run="{run_id}"][data-status="waiting"]')
    row.wait_for(timeout=10_000)
    assert "waits for input 'approve': Publish the otter post?" in row.inner_text()
    page.click(".nbflow-runs-waiting")  # "1 waiting": the list shows only waiting runs
    shown = page.locator(".nbflow-run-row").evaluate_all("rows => rows.map(r => r.dataset.run)")
    assert shown == [run_id]
    row.click()

    approve = page.locator(ask("approve"))
    approve.wait_for(timeout=10_000)
    assert approve.locator(".nbflow-ask-prompt").inner_text() == "Publish the otter post?"
    page.screenshot(path=artifact("waits-ui-approve.png"))
    approve.locator(".nbflow-ask-true").click()

    channel = page.locator(ask("channel"))
    channel.wait_for(timeout=15_000)
    assert channel.locator("option").all_inner_texts() == ["choose…", "blog", "newsletter", "both"]
    channel.locator(".nbflow-ask-send").click()  # nothing chosen: said here, nothing sent
    assert channel.locator(".nbflow-ask-error").inner_text() == "choose one of the options"
    channel.locator("select").select_option(label="newsletter")
    channel.locator(".nbflow-ask-send").click()

    copies = page.locator(ask("copies"))
    copies.wait_for(timeout=15_000)
    copies.locator("input").fill("0")
    copies.locator(".nbflow-ask-send").click()  # the server refuses it, naming the field
    error = copies.locator(".nbflow-ask-error")
    error.filter(has_text="minimum").wait_for(timeout=10_000)
    assert error.inner_text() == "input 'copies': 0 is less than the minimum of 1"
    assert copies.get_attribute("data-state") == "error"
    page.screenshot(path=artifact("waits-ui-refused.png"))
    copies.locator("input").fill("2")
    copies.locator(".nbflow-ask-send").click()

    note = page.locator(ask("note"))
    note.wait_for(timeout=15_000)
    note.locator("input").fill("looks good")
    note.locator("input").press("Enter")

    page.wait_for_selector(f'{TRACE}[data-status="succeeded"]', timeout=20_000)
    assert page.locator(".nbflow-ask").count() == 0
    assert runtime.attach(run_id).result(timeout_s=5) == "published newsletter 2 looks good"
    page.screenshot(path=artifact("waits-ui-succeeded.png"))


def test_ui_lists_child_runs_under_their_parent_and_opens_them(
    page: Any, api_url: str, redis_url: str, r: redis.Redis, worker_elsewhere: Any
) -> None:
    run_id = start_run_elsewhere(redis_url, TEST_SECRET, "fan_out", n=3)
    wait_status(r, run_id, {"succeeded"})
    page.goto(f"{api_url}/ui#run={run_id}")
    page.wait_for_selector(f'{TRACE}[data-status="succeeded"]')
    children = page.locator(f"{TRACE} .nbflow-child")
    assert children.count() == 3
    assert page.locator(f"{TRACE} .nbflow-children-head").inner_text() == "Child runs: 3 (3 ended)"
    statuses = children.evaluate_all("rows => rows.map(r => r.dataset.status)")
    assert statuses == ["succeeded"] * 3
    assert children.first.locator(".nbflow-child-workflow").inner_text() == "paced"
    page.screenshot(path=artifact("waits-ui-children.png"))
    child_id = children.nth(2).get_attribute("data-child")
    children.nth(2).click()
    page.wait_for_selector(f'{TRACE}[data-run="{child_id}"][data-status="succeeded"]')
    assert page.locator(f"{TRACE} .nbflow-span-row:not([hidden])").count() == 4  # 3 steps


def test_lab_runs_panel_shows_a_waiting_run_and_its_form_approves_it(
    page: Any, lab: Lab, redis_url: str, r: redis.Redis, runtime: Runtime,
    worker_elsewhere: Any,
) -> None:  # fmt: skip
    run_id = start_run_elsewhere(redis_url, TEST_SECRET, "approval")
    wait_status(r, run_id, {"waiting"})
    open_lab(page, lab)
    page.click('.jp-SideBar.jp-mod-right .lm-TabBar-tab[data-id="nbflow-runs"]')
    page.select_option(".nbflow-filters select[title=status]", "waiting")
    row = page.locator(f'.nbflow-run-row[data-run="{run_id}"][data-status="waiting"]')
    row.wait_for(timeout=10_000)
    assert "waits for input 'approve'" in row.inner_text()
    row.click()
    form = page.locator(ask("approve"))
    form.wait_for(timeout=10_000)
    page.screenshot(path=artifact("waits-lab-panel-form.png"))
    form.locator(".nbflow-ask-true").click()
    page.wait_for_selector(f'{TRACE}[data-run="{run_id}"][data-status="succeeded"]', timeout=20_000)
    assert runtime.attach(run_id).result(timeout_s=5) == "published"
    page.wait_for_selector(f'.nbflow-run-row[data-run="{run_id}"]', state="detached")  # filtered
    page.select_option(".nbflow-filters select[title=status]", "")
    page.wait_for_selector(f'.nbflow-run-row[data-run="{run_id}"][data-status="succeeded"]')


def test_lab_notebook_output_of_a_waiting_run_answers_it_through_the_server(
    page: Any, lab: Lab, redis_url: str, r: redis.Redis, runtime: Runtime,
    worker_elsewhere: Any,
) -> None:  # fmt: skip
    run_id = start_run_elsewhere(
        redis_url, TEST_SECRET, "approval", draft="the beaver post", details=True
    )
    wait_status(r, run_id, {"waiting"})
    cell = nbformat.v4.new_code_cell("run", outputs=[snapshot_output(run_id)])
    kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook = nbformat.v4.new_notebook(cells=[cell], metadata={"kernelspec": kernel})
    nbformat.write(notebook, lab.root / "waits.ipynb")
    open_lab(page, lab, "lab/tree/waits.ipynb")
    output = f'.nbflow-output-renderer {TRACE}[data-run="{run_id}"]'
    form = page.locator(f".nbflow-output-renderer {ask('approve')}")
    form.wait_for(timeout=30_000)
    assert form.locator(".nbflow-ask-prompt").inner_text() == "Publish the beaver post?"
    page.screenshot(path=artifact("waits-lab-output-form.png"))
    form.locator(".nbflow-ask-true").click()
    channel = page.locator(f".nbflow-output-renderer {ask('channel')}")
    channel.wait_for(timeout=15_000)
    channel.locator("select").select_option(label="blog")
    channel.locator(".nbflow-ask-send").click()
    # In a notebook, Enter in a field sends the answer (the notebook's shortcuts keep off).
    for name, text in (("copies", "4"), ("note", "ok")):
        field = page.locator(f".nbflow-output-renderer {ask(name)} .nbflow-ask-field")
        field.wait_for(timeout=15_000)
        field.fill(text)
        field.press("Enter")
    page.wait_for_selector(f'{output}[data-status="succeeded"]', timeout=20_000)
    assert runtime.attach(run_id).result(timeout_s=5) == "published blog 4 ok"
