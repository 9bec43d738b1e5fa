"""Bad requests: each answers JSON ``{"error": {"type", "message"}}`` and creates no run."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from nbflow import constants as c
from nbflow.api import create_app
from nbflow.runtime.client import Runtime

from ..conftest import TEST_SECRET, ThreadServer


@pytest.fixture
def client(serve: Callable[..., str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=serve(max_body_bytes=1_000), timeout=10) as http:
        yield http


@pytest.fixture
def no_run_created(r: redis.Redis) -> Iterator[None]:
    yield
    assert r.zcard(c.RUNS_INDEX) == 0
    assert r.keys("nbflow:{*") == []
    assert not r.exists(c.WORK_STREAM) or r.xlen(c.WORK_STREAM) == 0


def _error(reply: httpx.Response, status: int, type_: str) -> str:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/json"
    body = reply.json()
    assert set(body) == {"error"}
    assert body["error"]["type"] == type_
    message: str = body["error"]["message"]
    return message


@pytest.mark.usefixtures("no_run_created")
@pytest.mark.parametrize("path", ["/workflows/nope", "/workflows/nope/start"])
def test_unknown_workflow_is_404(client: httpx.Client, path: str) -> None:
    assert "nope" in _error(client.post(path, json={"input": {}}), 404, "workflow_not_found")


@pytest.mark.usefixtures("no_run_created")
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/runs/0123456789abcdef"),
        ("GET", "/runs/0123456789abcdef/events"),
        ("POST", "/runs/0123456789abcdef/cancel"),
        ("GET", "/runs/not%20an%20id"),
        ("GET", "/runs/%7Bx%7D/events"),
    ],
)
def test_unknown_run_is_404(client: httpx.Client, method: str, path: str) -> None:
    _error(client.request(method, path), 404, "run_not_found")


@pytest.mark.usefixtures("no_run_created")
def test_invalid_input_is_422_naming_every_field(client: httpx.Client) -> None:
    reply = client.post(
        "/workflows/typed/start", json={"input": {"n": "x", "tags": [1], "extra": 0}}
    )
    message = _error(reply, 422, "invalid_input")
    fields = {f["field"] for f in reply.json()["error"]["fields"]}
    assert fields == {"input.n", "input.ratio", "input.tags.0", "input.extra"}
    assert all(name in message for name in fields)


@pytest.mark.usefixtures("no_run_created")
@pytest.mark.parametrize(
    ("body", "field"),
    [({"input": {"name": "x"}, "other": 1}, "other"), ({"input": [1]}, "input"), ([], "body")],
)
def test_a_malformed_body_is_422(client: httpx.Client, body: object, field: str) -> None:
    reply = client.post("/workflows/greet", json=body)
    _error(reply, 422, "invalid_input")
    assert [f["field"] for f in reply.json()["error"]["fields"]] == [field]


@pytest.mark.usefixtures("no_run_created")
def test_body_that_is_not_json_is_422(client: httpx.Client) -> None:
    reply = client.post(
        "/workflows/greet", content=b"{nope", headers={"content-type": "application/json"}
    )
    message = _error(reply, 422, "invalid_input")
    assert message.startswith("body: not valid JSON: ") and "at character 1" in message
    assert reply.json()["error"]["fields"] == [{"field": "body", "message": message[6:]}]


@pytest.mark.usefixtures("no_run_created")
def test_oversized_body_is_413_declared_or_chunked(client: httpx.Client) -> None:
    big = {"input": {"name": "x" * 2_000}}
    _error(client.post("/workflows/greet", json=big), 413, "body_too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds all the same
        yield b'{"input": {"name": "'
        yield b"x" * 2_000
        yield b'"}}'

    _error(client.post("/workflows/greet", content=chunks()), 413, "body_too_large")


def test_malformed_last_event_id_is_400(client: httpx.Client) -> None:
    run_id = client.post("/workflows/greet/start", json={"input": {"name": "x"}}).json()["run_id"]
    for bad in ("abc", "1-2-3", "-1", "1_000", "99999999999999999999999"):
        _error(
            client.get(f"/runs/{run_id}/events", headers={"Last-Event-ID": bad}),
            400,
            "bad_event_id",
        )
        _error(client.get(f"/runs/{run_id}/events", params={"after": bad}), 400, "bad_event_id")


@pytest.mark.usefixtures("no_run_created")
def test_unknown_routes_and_methods_answer_json(client: httpx.Client) -> None:
    _error(client.get("/nowhere"), 404, "not_found")
    _error(client.delete("/runs"), 405, "method_not_allowed")
    _error(client.get("/runs", params={"limit": 0}), 422, "invalid_input")


@pytest.mark.parametrize("show_paths", [False, True])
def test_errors_do_not_show_server_paths_unless_asked(tmp_path: Path, show_paths: bool) -> None:
    socket_path = tmp_path / "deep" / "inside" / "nothing-here.sock"
    down = Runtime(f"unix://{socket_path}", secret=TEST_SECRET, cluster=False)
    server = ThreadServer(create_app(down, show_paths=show_paths))
    try:
        reply = httpx.get(f"{server.url}/runs", timeout=30)
    finally:
        server.stop()
        down.close()
    message = _error(reply, 503, "runtime_unavailable")
    assert "nothing-here.sock" in message
    assert (str(tmp_path) in message) == show_paths, message


def test_the_unreadable_body_error_of_before_is_gone(client: httpx.Client) -> None:
    # FastAPI answered 400 "There was an error parsing the body" for bytes not UTF-8.
    reply = client.post(
        "/workflows/greet", content=b"\xff\xfe", headers={"content-type": "application/json"}
    )
    assert _error(reply, 422, "invalid_input").startswith("body: not valid JSON: not UTF-8")
