"""The API under test: uvicorn on loopback, in this process (on a thread) or in its own."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from nbflow.api import create_app
from nbflow.runtime.client import Runtime

from ..conftest import TEST_SECRET, ThreadServer
from .helpers import APP, ApiProcess, start_api_process


@pytest.fixture(autouse=True)
def _no_token_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NBFLOW_API_TOKEN", raising=False)


@pytest.fixture
def served_apps() -> dict[str, FastAPI]:
    """The apps ``serve`` started, by base URL, for tests that look inside them."""
    return {}


@pytest.fixture
def serve(runtime: Runtime, served_apps: dict[str, FastAPI]) -> Iterator[Callable[..., str]]:
    """Start the API on a thread of this process; its base URL. All are stopped at the end."""
    servers: list[ThreadServer] = []

    def start(
        *, app_module: str | None = APP, server: dict[str, Any] | None = None, **options: Any
    ) -> str:
        """``options`` go to create_app, ``server`` to uvicorn.Config."""
        app = create_app(runtime, app_module=app_module, **options)
        servers.append(ThreadServer(app, **(server or {})))
        served_apps[servers[-1].url] = app
        return servers[-1].url

    yield start
    for server in servers:
        server.ask_to_stop()  # all at once, then wait for each
    for server in servers:
        server.stop()


@pytest.fixture
def client(serve: Callable[..., str], worker: Callable[..., Any]) -> Iterator[httpx.Client]:
    """A client of the API, with a worker running the test apps' workflows (test modules
    that need no worker, or other settings, define their own ``client``)."""
    worker(app=APP)
    with httpx.Client(base_url=serve(), timeout=20) as http:
        yield http


@pytest.fixture
def api_process(
    redis_url: str, runtime: Runtime, tmp_path: Path
) -> Iterator[Callable[..., ApiProcess]]:
    """Start ``nbflow api`` processes (serving tests.api.apps_for_tests); killed at the end."""
    started: list[ApiProcess] = []

    def start(*, port: int | None = None) -> ApiProcess:
        api = start_api_process(redis_url, TEST_SECRET, tmp_path, port=port)
        started.append(api)
        return api

    yield start
    for api in started:
        api.kill()
