"""A real browser: JupyterLab (a subprocess on a free loopback port, with a token) in
Debian's Chromium driven by Playwright. A ``%%workflow`` cell's view updates live; the
kernel is restarted mid-run; ``%nbflow attach`` shows the whole run again, then its end."""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pytest

from nbflow.jupyter.display import run_bundle
from nbflow.runtime.client import Runtime

from ..browser import CHROMIUM_ARGS, artifact, require_chromium
from ..conftest import wait_until

PARTS = 40
BIG = 10_000
CELLS = [
    "import nbflow as nf\n%load_ext nbflow",
    "%%component --retry 2\ndef count(i):\n"
    "    import time\n    time.sleep(0.1)\n    return f'{{i}} '",
    # Halfway, the run waits for the test's ``gate`` file: it is still running when the
    # kernel restarts and the notebook re-attaches, and goes on live afterwards.
    "%%workflow counting --n {n} --gate {gate}\nimport os, time\nfor i in range(n):\n"
    "    if i == n // 2:\n        while not os.path.exists(gate):\n            time.sleep(0.05)\n"
    "    nf.progress(f'part {{i // 10}}')\n    nf.emit(count(i))\nn",
    "import nbflow as nf\n%load_ext nbflow\n%nbflow attach\n\n"
    "@nf.component\ndef leaf(i):\n    return i",
    "%%workflow big --n {big} --local\nfor i in range(n):\n    leaf(i)\nn",
]
SETTINGS = {
    # Draw every cell (no windowing), and no news or update pop-ups over the notebook.
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def lab(tmp_path: Path, redis_url: str, runtime: Runtime) -> Iterator[tuple[str, str, Path]]:
    """A JupyterLab server on a free port: (base url, token, root dir)."""
    root, port, token = tmp_path / "root", free_port(), secrets.token_hex(16)
    root.mkdir()
    settings = tmp_path / "settings"
    for name, value in SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(value))
    book = nbformat.v4.new_notebook()
    book.cells = [
        nbformat.v4.new_code_cell(c.format(n=PARTS, big=BIG, gate=tmp_path / "gate")) for c in CELLS
    ]
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(book, root / "live.ipynb")
    # This test pins the kernel-side widget, which front ends without nbflow's
    # JupyterLab extension show (VS Code, a lab without it). Where the extension is
    # installed its renderer ranks first; tests/viewer pins that one.
    labconfig = tmp_path / "config" / "labconfig"
    labconfig.mkdir(parents=True)
    disabled = {"disabledExtensions": {"nbflow": True}}
    (labconfig / "page_config.json").write_text(json.dumps(disabled))
    env = {
        **os.environ,
        "NBFLOW_REDIS_URL": redis_url,
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
    }
    cmd = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        "--LabApp.expose_app_in_browser=True", f"--LabApp.user_settings_dir={settings}",
        f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}", "--LabApp.extension_manager=readonly",
    ]  # fmt: skip
    if os.geteuid() == 0:  # CI containers run as root
        cmd.append("--allow-root")
    log = (tmp_path / "lab.log").open("wb")
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _up(base, token) or server.poll() is not None, timeout_s=60)
        assert server.poll() is None, (tmp_path / "lab.log").read_text()[-3000:]
        yield base, token, root
    finally:
        server.terminate()
        server.wait(20)
        log.close()


def _up(base: str, token: str) -> bool:
    try:
        return httpx.get(f"{base}/api/status", params={"token": token}, timeout=2).is_success
    except httpx.HTTPError:
        return False


KERNEL_IDLE = """() => {
  const app = window.jupyterapp;
  const nb = app && app.shell.currentWidget;
  const kernel = nb && nb.sessionContext && nb.sessionContext.session
    && nb.sessionContext.session.kernel;
  return !!kernel && kernel.status === 'idle';
}"""
SCROLL_TO_END = """async (cell) => {
  const tree = cell.querySelector('.nbflow-scroll');
  const t0 = performance.now();
  tree.scrollTop = tree.scrollHeight;
  await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
  return performance.now() - t0;
}"""
RUN_CELL = """async (index) => {
  const app = window.jupyterapp;
  app.shell.currentWidget.content.activeCellIndex = index;
  await app.commands.execute('notebook:run-cell');
}"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_live_view_in_jupyterlab_survives_a_kernel_restart(
    lab: tuple[str, str, Path], runtime: Runtime, worker: Callable[..., Any]
) -> None:
    from playwright.sync_api import sync_playwright

    binary = require_chromium()
    worker()
    base, token, root = lab
    gate = root.parent / "gate"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=binary, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(f"{base}/lab/tree/live.ipynb?token={token}")
            page.wait_for_function(KERNEL_IDLE, timeout=90_000)
            cells = page.locator(".jp-Notebook .jp-Cell")

            for index in (0, 1):
                page.evaluate(RUN_CELL, index)
                page.wait_for_function(KERNEL_IDLE, timeout=60_000)
            page.evaluate(RUN_CELL, 2)
            live = cells.nth(2).locator(".nbflow-widget .nbflow-trace")
            live.wait_for(timeout=60_000)
            output = live.locator(".nbflow-output")
            wait_until(lambda: len(output.text_content() or "") > 10, timeout_s=30)
            first = output.text_content() or ""
            time.sleep(1.0)
            later = output.text_content() or ""
            assert len(later) > len(first) and later.startswith(first)  # it updates live
            assert live.get_attribute("data-status") == "running"
            assert live.locator(".nbflow-step").count() >= 1
            page.screenshot(path=artifact("jupyterlab_live_view.png"))

            run_id = runtime.run_ids(limit=1)[0]
            # Not awaited: the command resolves only once its dialog is answered.
            page.evaluate("() => { window.jupyterapp.commands.execute('kernelmenu:restart'); }")
            page.locator(".jp-Dialog .jp-mod-accept").click()
            time.sleep(0.5)
            page.wait_for_function(KERNEL_IDLE, timeout=60_000)
            assert runtime.attach(run_id).status() == "running"  # the run outlives its kernel

            page.evaluate(RUN_CELL, 3)
            again = cells.nth(3).locator(".nbflow-widget .nbflow-trace")
            again.wait_for(timeout=60_000)
            assert "full history, then live" in (cells.nth(3).text_content() or "")
            half = "".join(f"{i} " for i in range(PARTS // 2))
            wait_until(lambda: again.locator(".nbflow-output").text_content() == half, 30)
            gate.touch()  # the run goes on: the re-attached view follows it live
            wait_until(lambda: again.get_attribute("data-status") == "succeeded", timeout_s=60)
            text = again.locator(".nbflow-output").text_content()
            assert text == "".join(f"{i} " for i in range(PARTS))  # all of it, once, in order
            assert again.locator(".nbflow-step").count() == PARTS // 10
            page.screenshot(path=artifact("jupyterlab_reattached.png"))
            again.screenshot(path=artifact("jupyterlab_run_view.png"))
            assert again.locator(".nbflow-span-count").text_content() == f"{PARTS + 1} spans"
            # The span inspector, in the widget as everywhere: a step's input and output.
            again.locator(
                ".nbflow-span-row .nbflow-name", has_text=re.compile("^count$")
            ).first.click()
            inspector = again.locator(".nbflow-inspector")
            inspector.wait_for(timeout=10_000)
            assert '"i"' in (inspector.locator('[data-section="input"]').text_content() or "")
            assert "0 " in (inspector.locator('[data-section="output"]').text_content() or "")
            again.screenshot(path=artifact("jupyterlab_widget_inspector.png"))

            page.wait_for_function(KERNEL_IDLE, timeout=60_000)
            page.evaluate(RUN_CELL, 4)
            big = cells.nth(4).locator(".nbflow-widget .nbflow-trace")
            big.wait_for(timeout=60_000)
            wait_until(lambda: big.get_attribute("data-status") == "succeeded", 90)
            count = big.locator(".nbflow-span-count")
            wait_until(lambda: count.text_content() == "10,001 spans", 30)
            rows = big.locator(".nbflow-span-row:not([hidden])")
            assert rows.count() < 100  # drawn virtually: rows in sight only
            took_ms = page.evaluate(SCROLL_TO_END, cells.nth(4).element_handle())
            assert took_ms < 1_000
            wait_until(lambda: "leaf" in (rows.last.text_content() or ""), 5)
            big.screenshot(path=artifact("jupyterlab_10k_spans.png"))

            # The text/html snapshot saved with the output, as a browser shows it without JS.
            snapshot, _state = run_bundle(runtime.attach(run_id))
            page.set_content(snapshot["text/html"], wait_until="load")
            static = page.locator(".nbf-run.nbf-static")
            assert static.locator(".nbf-badge").text_content() == "succeeded"
            static.screenshot(path=artifact("html_snapshot.png"))
        finally:
            browser.close()
