"""Shared fixtures: one real Redis per session, a clean keyspace per test, workers that clean up.

The server is the embedded Valkey (a fresh NBFLOW_HOME), or the Redis at
``NBFLOW_TEST_REDIS_URL`` when that is set.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import nbflow as nf
from nbflow._local import LocalRun
from nbflow.runtime.client import Runtime, set_runtime
from nbflow.runtime.run import Run
from nbflow.runtime.worker import Worker, WorkerOptions, run_in_thread

from .redis_servers import start_embedded, stop_embedded

TEST_SECRET = b"nbflow-test-secret"
ROOT = Path(__file__).resolve().parents[1]
FAST = {"lease_ms": 1_000, "heartbeat_ms": 200, "sweep_interval_ms": 200}


@pytest.fixture(scope="session")
def test_home() -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="nbf-"))
    os.environ["NBFLOW_HOME"] = str(home)
    os.environ["NBFLOW_SECRET"] = TEST_SECRET.decode()
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url(test_home: Path) -> Iterator[str]:
    external = os.environ.get("NBFLOW_TEST_REDIS_URL")
    if external:
        yield external
        return
    url = start_embedded(test_home / "server")
    yield url
    stop_embedded(test_home / "server")


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    """A raw client on a flushed keyspace."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def runtime(redis_url: str, r: redis.Redis) -> Iterator[Runtime]:
    rt = Runtime(redis_url, secret=TEST_SECRET, cluster=False)
    set_runtime(rt)
    yield rt
    set_runtime(None)
    rt.close()


@pytest.fixture
def worker(redis_url: str, runtime: Runtime) -> Iterator[Callable[..., Worker]]:
    """Start in-process workers (on threads); all are drained at the end of the test."""
    started: list[tuple[Worker, Any]] = []

    def start(
        *, concurrency: int = 4, app: str | None = None, url: str | None = None, **options: Any
    ) -> Worker:
        w = Worker(
            url or redis_url,
            app=app,
            secret=TEST_SECRET,
            options=WorkerOptions(concurrency=concurrency, **{**FAST, **options}),
        )
        started.append((w, run_in_thread(w)))
        return w

    yield start
    for w, _thread in started:
        w.options.drain_timeout_s = 2.0
        w.stop()
    for _w, thread in started:
        thread.join(15)
        assert not thread.is_alive(), "a worker did not stop"


def last_run() -> LocalRun | Run:
    """``nf.last_run()`` in a test that has started a run."""
    run = nf.last_run()
    assert run is not None, "no run was started"
    return run


def last_local_run() -> LocalRun:
    """``nf.last_run()`` in a test that has just run a workflow in-process."""
    run = last_run()
    assert isinstance(run, LocalRun), f"the last run is on the runtime: {run!r}"
    return run


def wait_until(predicate: Callable[[], Any], timeout_s: float, *, interval_s: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned); fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"condition not met within {timeout_s} s"
        time.sleep(interval_s)


class ThreadServer:
    """An ASGI app under uvicorn on a thread of this process, on a free loopback port."""

    def __init__(self, app: Any, **options: Any) -> None:
        import uvicorn

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(
            app, log_level="warning", ws="none", timeout_graceful_shutdown=1, **options
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert self._thread.is_alive() and time.monotonic() < deadline, "the API did not start"
            time.sleep(0.01)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def ask_to_stop(self) -> None:
        self._server.should_exit = True

    def stop(self) -> None:
        self.ask_to_stop()
        self._thread.join(10)
        self._sock.close()


def spawn_worker(
    url: str, app: str, *extra: str, app_dir: Path, lease_ms: int = 1_000
) -> subprocess.Popen[bytes]:
    """An ``nbflow worker`` process serving module ``app`` from ``app_dir``."""
    env = {
        **os.environ,
        "PYTHONPATH": f"{app_dir}{os.pathsep}{ROOT}",
        "NBFLOW_SECRET": TEST_SECRET.decode(),
    }
    cmd = [sys.executable, "-m", "nbflow.cli", "worker", "--redis", url, "--app", app]
    cmd += ["--lease-ms", str(lease_ms), *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        if proc.stderr:
            proc.stderr.close()


@pytest.fixture
def worker_process(
    redis_url: str, runtime: Runtime
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start ``nbflow worker`` processes serving tests/runtime/rt_apps.py; killed at the end."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(*extra: str, lease_ms: int = 1_000) -> subprocess.Popen[bytes]:
        app_dir = ROOT / "tests" / "runtime"
        procs.append(spawn_worker(redis_url, "rt_apps", *extra, app_dir=app_dir, lease_ms=lease_ms))
        return procs[-1]

    yield start
    stop_workers(procs)
