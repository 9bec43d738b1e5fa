"""SIGTERM to ``nbflow api`` with event streams open: they end cleanly at once, no traceback."""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from nbflow.api.server import GRACEFUL_SHUTDOWN_S

from .apps_for_tests import gate
from .helpers import APP, ApiProcess, Frame, events

CLIENTS = 6


def _follow_to_the_end(url: str, started: Any) -> list[Frame]:
    with httpx.stream("GET", url, timeout=30) as response:
        got = []
        for frame in events(response):
            got.append(frame)
            if len(got) == 1:
                started.release()
        return got  # the stream ended as a stream ends: no error


def test_sigterm_ends_open_streams_at_once_and_logs_no_traceback(
    api_process: Callable[..., ApiProcess], worker: Callable[..., Any]
) -> None:
    worker(app=APP)
    api = api_process()
    key = uuid.uuid4().hex
    reply = httpx.post(f"{api.url}/workflows/staged/start", json={"input": {"key": key}})
    url = f"{api.url}/runs/{reply.json()['run_id']}/events"
    started = threading.Semaphore(0)
    try:
        with ThreadPoolExecutor(CLIENTS) as pool:
            clients = [pool.submit(_follow_to_the_end, url, started) for _ in range(CLIENTS)]
            for _ in range(CLIENTS):
                assert started.acquire(timeout=20)
            asked_at = time.monotonic()
            api.proc.send_signal(signal.SIGTERM)
            streams = [client.result(20) for client in clients]
            ended_s = time.monotonic() - asked_at
        assert api.proc.wait(10) in (0, -signal.SIGTERM)
    finally:
        gate(f"{key}/0").set()
        gate(f"{key}/1").set()
    assert ended_s < GRACEFUL_SHUTDOWN_S  # ended by the server, not cut at its time-out
    assert all(len(got) == len(streams[0]) >= 4 for got in streams)  # each saw what was there
    log = api.log.read_text()
    assert "Application shutdown complete" in log
    assert "Traceback" not in log and "ERROR" not in log, log
