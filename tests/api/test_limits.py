"""What clients cost the API, and where it stops: Redis connections (one reader per
followed run, released when its clients leave), a limit on streams, a header time-out."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import redis

from nbflow import constants as c
from nbflow.api.protocol import with_header_timeout
from nbflow.api.service import client_name

from ..conftest import wait_until
from .apps_for_tests import gate
from .helpers import APP, events

STREAMS = 30  # three times the API's pool: a connection per client would show
RUNS = 3


def _api_connections(r: redis.Redis) -> int:
    """This process's API connections (a shared Redis may serve other API processes)."""
    return sum(1 for client in r.client_list() if client["name"] == client_name())


@pytest.fixture
def waiting_runs(worker: Callable[..., Any]) -> Iterator[Callable[[str], list[str]]]:
    """Start ``staged`` runs that wait on a gate after their first events; opened at the end."""
    worker(app=APP)
    keys: list[str] = []

    def start(base_url: str) -> list[str]:
        run_ids = []
        for _ in range(RUNS):
            keys.append(uuid.uuid4().hex)
            reply = httpx.post(
                f"{base_url}/workflows/staged/start", json={"input": {"key": keys[-1]}}
            )
            run_ids.append(reply.json()["run_id"])
        return run_ids

    yield start
    for key in keys:
        gate(f"{key}/0").set()
        gate(f"{key}/1").set()


class Followers:
    """``n`` SSE clients, each on a thread, holding its stream open until ``leave()``."""

    def __init__(self, base_url: str, run_ids: list[str], n: int) -> None:
        self.started = threading.Semaphore(0)
        self.leaving = threading.Event()
        self.pool = ThreadPoolExecutor(n)
        targets = [run_ids[i % len(run_ids)] for i in range(n)]
        self.futures = [self.pool.submit(self._follow, base_url, run_id) for run_id in targets]
        for _ in range(n):
            assert self.started.acquire(timeout=20), "a stream did not start"

    def _follow(self, base_url: str, run_id: str) -> None:
        with httpx.stream("GET", f"{base_url}/runs/{run_id}/events", timeout=30) as response:
            assert response.status_code == 200
            stream = events(response)  # kept: dropping the iterator would close the stream
            next(stream)
            self.started.release()
            self.leaving.wait(30)
            stream.close()

    def leave(self) -> None:
        self.leaving.set()
        for future in self.futures:
            future.result(10)
        self.pool.shutdown()


def test_clients_of_a_run_share_one_connection_and_leave_none_behind(
    serve: Callable[..., str], r: redis.Redis, waiting_runs: Callable[[str], list[str]]
) -> None:
    base_url = serve(max_streams=STREAMS)
    run_ids = waiting_runs(base_url)
    baseline = _api_connections(r)
    assert baseline == c.API_REDIS_CONNECTIONS  # the pool, opened whole at start
    followers = Followers(base_url, run_ids, STREAMS)
    try:
        assert _api_connections(r) == baseline + RUNS  # one reader per run, not per client
    finally:
        followers.leave()
    wait_until(lambda: _api_connections(r) == baseline, timeout_s=10)
    again = Followers(base_url, run_ids, STREAMS)  # every slot was given back
    again.leave()
    wait_until(lambda: _api_connections(r) == baseline, timeout_s=10)


def test_past_max_streams_a_stream_or_a_waiting_run_gets_503_and_starts_nothing(
    serve: Callable[..., str], r: redis.Redis, waiting_runs: Callable[[str], list[str]]
) -> None:
    base_url = serve(max_streams=4)
    run_ids = waiting_runs(base_url)
    followers = Followers(base_url, run_ids, 4)
    try:
        runs_before = r.zcard(c.RUNS_INDEX)
        refused = [
            httpx.get(f"{base_url}/runs/{run_ids[0]}/events", timeout=10),
            httpx.post(f"{base_url}/workflows/greet", json={"input": {"name": "x"}}, timeout=10),
            httpx.post(
                f"{base_url}/workflows/greet",
                json={"input": {"name": "x"}},
                headers={"Accept": "text/event-stream"},
                timeout=10,
            ),
        ]
        for reply in refused:
            assert reply.status_code == 503, reply.text
            assert reply.json()["error"]["type"] == "too_many_streams"
            assert reply.headers["retry-after"] == "5"
        assert r.zcard(c.RUNS_INDEX) == runs_before  # refused before starting a run
        assert httpx.get(f"{base_url}/runs").status_code == 200  # other routes are served
    finally:
        followers.leave()
    reply = httpx.post(f"{base_url}/workflows/greet", json={"input": {"name": "x"}}, timeout=20)
    assert reply.json()["output"] == "hello x"  # the slots came back


def test_a_client_that_does_not_finish_its_headers_is_cut_off(serve: Callable[..., str]) -> None:
    header_timeout_s = 0.5
    base_url = serve(server={"http": with_header_timeout(header_timeout_s)})
    host, port = base_url.removeprefix("http://").split(":")
    for sent in (b"", b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"):  # nothing; half
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(sent)
            began = time.monotonic()
            assert sock.recv(1024) == b""  # closed by the server, with no answer
            waited_s = time.monotonic() - began
        assert header_timeout_s * 0.8 <= waited_s < header_timeout_s + 5


def test_a_slow_but_complete_request_and_a_kept_alive_one_are_served(
    serve: Callable[..., str],
) -> None:
    base_url = serve(server={"http": with_header_timeout(1.0)})
    host, port = base_url.removeprefix("http://").split(":")
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        for part in (request[:10], request[10:]):
            sock.sendall(part)
            time.sleep(0.3)
        assert b"200 OK" in sock.recv(4096)
        time.sleep(0.5)  # within the time-out again, on the same connection
        sock.sendall(request)
        assert b"200 OK" in sock.recv(4096)
