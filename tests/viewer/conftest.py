"""Real-browser fixtures: JupyterLab with the built extension, the REST API, Debian's Chromium.

JupyterLab finds the extension through ``JUPYTER_PATH`` (a link to the built
``nbflow/labextension``), so the tests run the same on an editable install and
on a ``pip install .`` in the source tree.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from nbflow.api import create_app
from nbflow.runtime.client import Runtime

from ..browser import CHROMIUM_ARGS, require_chromium
from ..conftest import TEST_SECRET, ThreadServer
from .support import LABEXTENSION, env, start_lab, start_worker
from .support import stop_process as stop

START_TIMEOUT_S = 60.0


def require_built() -> None:
    if not (LABEXTENSION / "package.json").is_file():
        pytest.skip(
            "the JupyterLab extension is not built (pip install ., or npm run build in extension/)"
        )


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    binary = require_chromium()
    require_built()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=binary, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    yield context.new_page()
    context.close()


class Lab:
    def __init__(self, url: str, token: str, root: Path, proc: subprocess.Popen[bytes]) -> None:
        self.url, self.token, self.root, self.proc = url, token, root, proc

    def api(self, method: str, path: str) -> Any:
        response = httpx.request(
            method,
            f"{self.url}/{path}",
            headers={"Authorization": f"token {self.token}"},
            timeout=10,
        )
        response.raise_for_status()
        return response.json() if response.content else None

    def restart_kernel(self) -> None:
        """Restart the one notebook's kernel, once it has one."""
        deadline = time.monotonic() + 30
        while not (sessions := self.api("GET", "api/sessions")):
            assert time.monotonic() < deadline, "the notebook never started a kernel"
            time.sleep(0.2)
        self.api("POST", f"api/kernels/{sessions[0]['kernel']['id']}/restart")


@pytest.fixture(scope="module")
def lab(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """``jupyter lab`` in its own process, with the server extension and the built front end."""
    require_built()
    base = tmp_path_factory.mktemp("lab")
    url, token, proc = start_lab(base, env(redis_url, TEST_SECRET), timeout_s=START_TIMEOUT_S)
    try:
        yield Lab(url, token, base / "root", proc)
    finally:
        stop(proc)


@pytest.fixture
def worker_elsewhere(redis_url: str, runtime: Runtime) -> Iterator[subprocess.Popen[bytes]]:
    """An ``nbflow worker`` process serving tests.viewer.viewer_apps."""
    proc = start_worker(redis_url, TEST_SECRET)
    yield proc
    stop(proc)


@pytest.fixture
def api_url(runtime: Runtime) -> Iterator[str]:
    """``nbflow api``'s app under uvicorn on a thread; its base URL."""
    served = ThreadServer(create_app(runtime))
    yield served.url
    served.stop()
