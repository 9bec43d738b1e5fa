"""Runs seen from notebooks in Debian's Chromium: a run's output in JupyterLab 4 is saved as
the run ended; a run tab opened from the runs panel comes back after a reload; in
Notebook 7, whose main area holds only the notebook, a run opens in a tab of its own."""

from __future__ import annotations

from typing import Any

import nbformat
import pytest
import redis

from ..browser import artifact
from ..conftest import TEST_SECRET, wait_until
from .conftest import Lab
from .support import start_run_elsewhere, wait_status
from .test_browser import MIME, TRACE, open_lab, snapshot_output

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


OUTPUT_ENDED = """(mime) => {
  const notebook = window.jupyterapp.shell.currentWidget.content.model;
  return notebook.cells.get(0).outputs.get(0).data[mime].status === 'succeeded';
}"""


def write_notebook(lab: Lab, name: str, run_id: str) -> None:
    shown = [snapshot_output(run_id)]  # as a kernel left it: running
    cell = nbformat.v4.new_code_cell("run = paced.submit(n=6)\nrun", outputs=shown)
    kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
    book = nbformat.v4.new_notebook(cells=[cell], metadata={"kernelspec": kernel})
    nbformat.write(book, lab.root / name)


def saved_output(lab: Lab, name: str) -> dict[str, Any]:
    book = nbformat.read(lab.root / name, as_version=4)
    data: dict[str, Any] = book.cells[0].outputs[0]["data"]
    return data


def test_lab_saves_a_runs_output_as_it_ended_and_restores_its_run_tab(
    page: Any, lab: Lab, redis_url: str, r: redis.Redis, worker_elsewhere: Any
) -> None:
    run_id = start_run_elsewhere(redis_url, TEST_SECRET, "paced", n=6, sleep_s=0.3)
    write_notebook(lab, "saved.ipynb", run_id)
    open_lab(page, lab, "lab/tree/saved.ipynb")
    output = f'.nbflow-output-renderer {TRACE}[data-run="{run_id}"]'
    assert saved_output(lab, "saved.ipynb")[MIME]["status"] == "running"
    page.wait_for_selector(f'{output}[data-status="succeeded"]', timeout=30_000)
    # The renderer writes the run's end into the notebook: the save holds it, no kernel ran.
    page.wait_for_function(OUTPUT_ENDED, arg=MIME, timeout=10_000)
    page.add_style_tag(content=".Toastify { display: none; }")  # JupyterLab's news question
    page.screenshot(path=artifact("viewer-lab-notebook-output.png"))
    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    wait_until(lambda: saved_output(lab, "saved.ipynb")[MIME]["status"] == "succeeded", 15)
    data = saved_output(lab, "saved.ipynb")
    assert data[MIME]["snapshot"]["progress"] == {f"step {i}": "done" for i in range(6)}
    assert "nbf-badge nbf-succeeded" in data["text/html"] and "└" in data["text/html"]
    assert f"<nbflow run {run_id} 'paced' succeeded (runtime)>" in data["text/plain"]
    kernels = lab.api("GET", "api/kernels")  # the notebook's kernel never ran a cell
    assert all(k["execution_state"] != "busy" for k in kernels)

    page.click('.jp-SideBar.jp-mod-right .lm-TabBar-tab[data-id="nbflow-runs"]')
    page.locator(f'.nbflow-run-row[data-run="{run_id}"]').click()
    tab = f'#jp-main-dock-panel .lm-TabBar-tab[data-id="nbflow-run-{run_id}"]'
    page.wait_for_selector(tab)
    wait_until(lambda: f"nbflow-run:{run_id}" in str(lab.api("GET", "lab/api/workspaces")), 10)
    page.goto(f"{lab.url}/lab/tree/saved.ipynb?token={lab.token}")  # a reload, layout kept
    page.wait_for_selector(tab, timeout=60_000)
    page.wait_for_selector(f'#nbflow-run-{run_id} {TRACE}[data-status="succeeded"]')
    page.screenshot(path=artifact("viewer-lab-run-tab-restored.png"))


def test_notebook_7_opens_a_run_from_the_panel_in_a_page_of_its_own(
    page: Any, lab: Lab, redis_url: str, r: redis.Redis, worker_elsewhere: Any
) -> None:
    run_id = start_run_elsewhere(redis_url, TEST_SECRET, "paced", n=2, sleep_s=0.05)
    wait_status(r, run_id, {"succeeded"})
    write_notebook(lab, "nb7.ipynb", run_id)
    page.goto(f"{lab.url}/notebooks/nb7.ipynb?token={lab.token}")
    page.wait_for_selector(f'.nbflow-output-renderer {TRACE}[data-run="{run_id}"]', timeout=60_000)
    assert page.evaluate("() => window.jupyterapp.name") == "Jupyter Notebook"
    page.evaluate(
        "() => { const shell = window.jupyterapp.shell;"
        " shell.expandRight(); shell.activateById('nbflow-runs'); }"
    )
    row = page.locator(f'.nbflow-run-row[data-run="{run_id}"]')
    row.wait_for(timeout=10_000)
    with page.context.expect_page(timeout=10_000) as opened:
        row.click()
    run_page = opened.value
    run_page.wait_for_selector(f'{TRACE}[data-run="{run_id}"][data-status="succeeded"]')
    assert run_page.url.endswith(f"/nbflow/api/ui#run={run_id}")
    assert "/notebooks/nb7.ipynb" in page.url  # the notebook stays where it was
    page.screenshot(path=artifact("viewer-notebook7-panel.png"))
    run_page.screenshot(path=artifact("viewer-notebook7-run-page.png"))
