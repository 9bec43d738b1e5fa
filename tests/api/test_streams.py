"""Event streams that are cut: clients resume with Last-Event-ID and miss nothing, twice nothing."""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from nbflow.api.server import GRACEFUL_SHUTDOWN_S
from nbflow.runtime.client import Runtime

from ..conftest import wait_until
from .apps_for_tests import gate
from .helpers import ApiProcess, Frame, events, frames


@pytest.fixture
def key(worker: Callable[..., Any]) -> str:
    """A fresh gate name for a ``staged`` run, with a worker to run it."""
    worker(app="tests.api.apps_for_tests")
    return uuid.uuid4().hex


def _start_staged(base_url: str, key: str) -> str:
    reply = httpx.post(
        f"{base_url}/workflows/staged/start", json={"input": {"key": key}}, timeout=10
    )
    run_id: str = reply.json()["run_id"]
    return run_id


def _read_until(stream: Iterator[Frame], chunk: str) -> list[Frame]:
    got = []
    for frame in stream:
        got.append(frame)
        if frame.data.get("chunk") == chunk:
            return got
    raise AssertionError(f"stream ended before chunk {chunk!r}")


def _wait_for_chunk(runtime: Runtime, run_id: str, chunk: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if any(e.get("chunk") == chunk for e in runtime.attach(run_id).events(follow=False)):
            return
        time.sleep(0.02)
    raise TimeoutError(f"run {run_id} never emitted {chunk!r}")


def _resume(base_url: str, run_id: str, last_id: str, *, open_later: str) -> list[Frame]:
    """Reconnect after ``last_id``; gate ``open_later`` opens once the replayed part has arrived."""
    with httpx.stream(
        "GET", f"{base_url}/runs/{run_id}/events", headers={"Last-Event-ID": last_id}, timeout=20
    ) as response:
        stream = events(response)
        got = _read_until(stream, "1.2")
        threading.Timer(0.2, gate(open_later).set).start()  # the rest arrives live
        got += list(stream)
    return got


def _assert_exactly_once(runtime: Runtime, run_id: str, got: list[Frame]) -> None:
    log = [e["id"] for e in runtime.attach(run_id).events(follow=False)]
    assert [f.id for f in got] == log
    assert got[-1].event == "run.succeeded"


def test_sse_client_that_drops_mid_run_resumes_with_every_event_once(
    serve: Callable[..., str], runtime: Runtime, key: str
) -> None:
    base_url = serve()
    run_id = _start_staged(base_url, key)
    with httpx.stream("GET", f"{base_url}/runs/{run_id}/events", timeout=20) as response:
        got = _read_until(events(response), "0.2")  # then the client drops
    gate(f"{key}/0").set()  # stage 1 is written while nobody listens
    _wait_for_chunk(runtime, run_id, "1.2")
    got += _resume(base_url, run_id, got[-1].id or "", open_later=f"{key}/1")
    _assert_exactly_once(runtime, run_id, got)


def test_api_process_restarted_mid_run_and_the_client_resumes(
    api_process: Callable[..., ApiProcess], runtime: Runtime, key: str
) -> None:
    api = api_process()
    run_id = _start_staged(api.url, key)
    got: list[Frame] = []
    with (
        pytest.raises(httpx.TransportError),
        httpx.stream("GET", f"{api.url}/runs/{run_id}/events", timeout=20) as stream,
    ):
        for frame in events(stream):
            got.append(frame)
            if frame.data.get("chunk") == "0.2":
                api.kill()  # the API dies under the client
    gate(f"{key}/0").set()
    _wait_for_chunk(runtime, run_id, "1.2")
    restarted = api_process(port=api.port)
    got += _resume(restarted.url, run_id, got[-1].id or "", open_later=f"{key}/1")
    _assert_exactly_once(runtime, run_id, got)


def test_two_api_processes_serve_the_same_runs(
    serve: Callable[..., str],
    api_process: Callable[..., ApiProcess],
    runtime: Runtime,
    worker: Callable[..., Any],
) -> None:
    worker(app="tests.api.apps_for_tests")
    here, there = serve(), api_process().url
    reply = httpx.post(
        f"{here}/workflows/ticker/start", json={"input": {"n": 200, "delay_s": 0.02}}
    )
    run_id = reply.json()["run_id"]
    with httpx.stream("GET", f"{there}/runs/{run_id}/events", timeout=20) as stream:
        seen: list[str] = []
        cancelled = None  # asked once: a second request may find the run already ended
        for frame in events(stream):
            seen.append(frame.event or "")
            if cancelled is None and seen.count("span.finished") == 3:
                cancelled = httpx.post(f"{here}/runs/{run_id}/cancel").json()
                assert cancelled["outcome"] == "requested"
    assert seen[-1] == "run.cancelled"
    views = [httpx.get(f"{base}/runs/{run_id}").json() for base in (here, there)]
    assert views[0] == {**views[1], "duration_s": views[0]["duration_s"]}
    assert views[0]["status"] == "cancelled"


def test_idle_streams_get_keep_alive_comments(serve: Callable[..., str], key: str) -> None:
    base_url = serve(keep_alive_s=0.1)
    run_id = _start_staged(base_url, key)
    with httpx.stream("GET", f"{base_url}/runs/{run_id}/events", timeout=20) as stream:
        comments = 0
        for frame in frames(stream):
            if frame.comment == "keep-alive":
                comments += 1
                if comments == 2:
                    gate(f"{key}/0").set()
                    gate(f"{key}/1").set()
            last = frame
    assert comments >= 2
    assert last.event == "run.succeeded"


def test_a_sync_client_that_gives_up_stops_following_its_run(
    serve: Callable[..., str], served_apps: dict[str, FastAPI], key: str
) -> None:
    base_url = serve()
    hub = served_apps[base_url].state.service.hub
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{base_url}/workflows/staged", json={"input": {"key": key}}, timeout=0.5)
    deadline = time.monotonic() + 5
    while hub.feeds and time.monotonic() < deadline:
        time.sleep(0.02)
    assert hub.feeds == {}
    gate(f"{key}/0").set()
    gate(f"{key}/1").set()


def test_a_waiting_request_answers_202_with_its_run_when_the_api_shuts_down(
    api_process: Callable[..., ApiProcess], runtime: Runtime, key: str
) -> None:
    api = api_process()
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(
            httpx.post, f"{api.url}/workflows/staged", json={"input": {"key": key}}, timeout=30
        )
        wait_until(lambda: runtime.run_ids(limit=1), timeout_s=10)  # the run is in
        time.sleep(0.2)  # and the request waits for it
        asked_at = time.monotonic()
        api.proc.send_signal(signal.SIGTERM)
        reply = waiting.result(20)
    assert reply.status_code == 202, reply.text
    assert api.proc.wait(10) in (0, -signal.SIGTERM)  # uvicorn re-raises it once shut down
    assert "Application shutdown complete" in api.log.read_text()
    assert time.monotonic() - asked_at < GRACEFUL_SHUTDOWN_S  # not cut at the time-out
    run_id = reply.json()["run_id"]
    assert runtime.run_ids(limit=1) == [run_id]
    gate(f"{key}/0").set()  # the run goes on without the API
    assert runtime.attach(run_id).result(timeout_s=20) == 6
