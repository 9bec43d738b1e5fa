"""The API under test: uvicorn on loopback, in this process (on a thread) or in its own."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

from nbflow.api import create_app
from nbflow.runtime.client import Runtime

from ..conftest import TEST_SECRET
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
    servers: list[tuple[uvicorn.Server, threading.Thread, socket.socket]] = []

    def start(*, app_module: str | None = APP, **options: Any) -> str:
        app = create_app(runtime, app_module=app_module, **options)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(app, log_level="warning", ws="none", timeout_graceful_shutdown=1)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        servers.append((server, thread, sock))
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the API did not start"
            time.sleep(0.01)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        served_apps[url] = app
        return url

    yield start
    for server, _thread, _sock in servers:
        server.should_exit = True
    for _server, thread, sock in servers:
        thread.join(10)
        sock.close()


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
