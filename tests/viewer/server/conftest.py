"""The server extension in a Jupyter server started by pytest-jupyter, reading the test Redis."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403  (its fixtures and hooks, here only)

from nbflow.runtime.client import Runtime

from ...conftest import TEST_SECRET


# pytest-jupyter's own fixture, overridden
@pytest.fixture  # type: ignore[no-redef]
def jp_server_config(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("NBFLOW_REDIS_URL", redis_url)
    monkeypatch.setenv("NBFLOW_SECRET", TEST_SECRET.decode())
    return {"ServerApp": {"jpserver_extensions": {"nbflow.jupyter.server": True}}}


@pytest.fixture
def finished(runtime: Runtime, worker: Callable[..., Any]) -> Iterator[Callable[..., str]]:
    """Run a workflow of tests.viewer.viewer_apps to its end on in-process workers; its id."""
    worker(app="tests.viewer.viewer_apps")

    def run(name: str = "paced", **kwargs: Any) -> str:
        handle = runtime.start(name, kwargs, notebook="analysis.ipynb")
        handle.wait(timeout_s=30)
        return handle.id

    yield run
