"""The notebook widget's answer form in a real browser: JupyterLab without nbflow's
extension (as VS Code or a lab without it shows runs), Debian's Chromium. The form sends
the answer through the kernel; a refused value shows next to the field; the run finishes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest

from nbflow.runtime.client import Runtime

from ..browser import CHROMIUM_ARGS, artifact, require_chromium
from ..conftest import wait_until
from . import test_browser
from .test_browser import KERNEL_IDLE, RUN_CELL

lab = test_browser.lab  # the JupyterLab server fixture, without nbflow's extension

CELLS = [
    "import nbflow as nf\n%load_ext nbflow",
    "@nf.workflow\ndef review(topic):\n"
    "    ok = nf.wait_for_input('approve', prompt=f'Publish {topic}?',"
    " schema={'type': 'boolean'})\n"
    "    n = nf.wait_for_input('copies', prompt='How many copies?',"
    " schema={'type': 'integer', 'minimum': 1}) if ok else 0\n"
    "    return f'{n} copies'\n\n"
    "run = review.submit('otters')\nrun",
]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_widgets_form_answers_through_the_kernel_and_shows_a_refusal(
    lab: tuple[str, str, Path], runtime: Runtime, worker: Callable[..., Any]
) -> None:
    from playwright.sync_api import sync_playwright

    binary = require_chromium()
    worker()
    base, token, root = lab
    book = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(book, root / "waits.ipynb")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=binary, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{base}/lab/tree/waits.ipynb?token={token}")
            page.wait_for_function(KERNEL_IDLE, timeout=90_000)
            for index in (0, 1):
                page.evaluate(RUN_CELL, index)
                page.wait_for_function(KERNEL_IDLE, timeout=60_000)
            view = (
                page.locator(".jp-Notebook .jp-Cell").nth(1).locator(".nbflow-widget .nbflow-trace")
            )
            view.wait_for(timeout=60_000)
            approve = view.locator('.nbflow-ask[data-input="approve"]')
            approve.wait_for(timeout=30_000)
            assert approve.locator(".nbflow-ask-prompt").text_content() == "Publish otters?"
            assert view.get_attribute("data-status") == "waiting"
            page.screenshot(path=artifact("waits-widget-approve.png"))
            approve.locator(".nbflow-ask-true").click()

            copies = view.locator('.nbflow-ask[data-input="copies"]')
            copies.wait_for(timeout=30_000)
            copies.locator("input").fill("0")
            copies.locator(".nbflow-ask-send").click()
            error = copies.locator(".nbflow-ask-error")
            wait_until(lambda: "minimum" in (error.text_content() or ""), timeout_s=20)
            assert error.text_content() == "input 'copies': 0 is less than the minimum of 1"
            page.screenshot(path=artifact("waits-widget-refused.png"))
            copies.locator("input").fill("3")
            copies.locator("input").press("Enter")  # the form's, not the notebook's shortcut

            wait_until(lambda: view.get_attribute("data-status") == "succeeded", timeout_s=30)
            assert view.locator(".nbflow-ask").count() == 0
            run_id = runtime.run_ids(limit=1)[0]
            assert runtime.attach(run_id).result(timeout_s=5) == "3 copies"
        finally:
            browser.close()
