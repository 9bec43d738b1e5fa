"""Runs over HTTP: sync, async (start and poll) and streamed, against a real server and workers."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

import nbflow as nf
from nbflow.runtime.client import Runtime

from .helpers import events


def test_workflows_lists_names_descriptions_and_input_schemas(client: httpx.Client) -> None:
    listed = {w["name"]: w for w in client.get("/workflows").json()["workflows"]}
    greet = listed["greet"]
    assert greet["source"] == "app"
    assert greet["description"] == "Say hello, streaming one line per greeting."
    schema = greet["input_schema"]
    assert schema["properties"]["name"]["type"] == "string"
    assert schema["properties"]["times"] == {"default": 1, "title": "Times", "type": "integer"}
    assert schema["required"] == ["name"]
    assert listed["typed"]["input_schema"]["properties"]["mode"]["enum"] == ["fast", "slow"]
    assert listed["untyped"]["input_schema"]["properties"]["a"] == {"title": "A"}


def test_sync_run_waits_and_returns_the_output(client: httpx.Client) -> None:
    reply = client.post("/workflows/typed", json={"input": {"n": 3, "ratio": 0.5, "tags": ["x"]}})
    assert reply.status_code == 200
    body = reply.json()
    assert body["status"] == "succeeded"
    assert body["output"] == {"n": 3, "ratio": 0.5, "tags": ["x"], "mode": "fast"}
    assert len(body["run_id"]) == 16


def test_sync_run_of_an_async_workflow(client: httpx.Client) -> None:
    body = client.post("/workflows/shout", json={"input": {"text": "hi"}}).json()
    assert (body["status"], body["output"]) == ("succeeded", "HI")


def test_sync_output_that_is_not_json_is_its_preview(client: httpx.Client) -> None:
    body = client.post("/workflows/opaque").json()
    assert (body["status"], body["output"]) == ("succeeded", "<Opaque thing>")


def test_sync_run_that_fails_says_why(client: httpx.Client) -> None:
    body = client.post("/workflows/fail", json={"input": {"message": "boom"}}).json()
    assert body["status"] == "failed"
    assert body["output"] is None
    assert body["error"]["type"] == "ValueError"
    assert body["error"]["message"] == "boom"  # the type is said once, in "type"
    assert body["error"]["traceback"].endswith("ValueError: boom\n")


def test_sync_run_past_its_timeout_answers_202_and_keeps_running(client: httpx.Client) -> None:
    from .apps_for_tests import gate

    reply = client.post(
        "/workflows/staged", params={"timeout_s": 0.3}, json={"input": {"key": "slow"}}
    )
    assert reply.status_code == 202
    run_id = reply.json()["run_id"]
    gate("slow/0").set()
    assert _poll(client, run_id)["output"] == 6


def test_start_returns_202_then_the_run_can_be_polled(client: httpx.Client) -> None:
    reply = client.post("/workflows/greet/start", json={"input": {"name": "ann", "times": 2}})
    assert reply.status_code == 202
    started = reply.json()
    assert started["status"] == "queued"
    run = _poll(client, started["run_id"])
    assert run["workflow"] == "greet"
    assert run["input"] == {"name": "ann", "times": 2}
    assert run["output"] == "hello ann"
    assert run["error"] is None
    assert run["progress"] == [
        {"step": "greeting", "state": "done"},
        {"step": "done", "state": "done"},
    ]
    assert run["created_at"] <= run["started_at"] <= run["ended_at"]
    assert run["usage"] == {
        "input_tokens": 0,
        "output_tokens": 0,
        "total_tokens": 0,
        "cost_usd": 0.0,
        "llm_calls": 0,
    }


def test_sse_stream_of_a_new_run_ends_after_its_terminal_event(
    client: httpx.Client, runtime: Runtime
) -> None:
    with client.stream(
        "POST",
        "/workflows/greet",
        json={"input": {"name": "bo", "times": 3}},
        headers={"Accept": "text/event-stream"},
    ) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        run_id = stream.headers["x-nbflow-run-id"]
        got = list(events(stream))
    assert got[0].event == "run.queued"
    assert got[-1].event == "run.succeeded"
    assert [f.data["chunk"] for f in got if f.event == "output"] == [
        "hello bo #0",
        "hello bo #1",
        "hello bo #2",
    ]
    assert all(f.id == f.data["id"] and f.event == f.data["type"] for f in got)
    assert [f.id for f in got] == [e["id"] for e in runtime.attach(run_id).events(follow=False)]


def test_ndjson_stream_of_a_new_run(client: httpx.Client) -> None:
    import json

    with client.stream(
        "POST",
        "/workflows/greet",
        json={"input": {"name": "cy"}},
        headers={"Accept": "application/x-ndjson"},
    ) as stream:
        assert stream.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in stream.iter_lines() if line]
    assert lines[0]["type"] == "run.queued"
    assert lines[-1] == {**lines[-1], "type": "run.succeeded", "output": "hello cy"}


def test_events_of_a_finished_run_replay_in_full_then_close(
    client: httpx.Client, runtime: Runtime
) -> None:
    run_id = client.post("/workflows/greet", json={"input": {"name": "di"}}).json()["run_id"]
    with client.stream("GET", f"/runs/{run_id}/events") as stream:
        ids = [f.id for f in events(stream)]
    assert ids == [e["id"] for e in runtime.attach(run_id).events(follow=False)]
    with client.stream("GET", f"/runs/{run_id}/events", params={"after": ids[2]}) as stream:
        assert [f.id for f in events(stream)] == ids[3:]


def test_runs_lists_newest_first_with_filters(client: httpx.Client) -> None:
    ok = client.post("/workflows/greet", json={"input": {"name": "x"}}).json()["run_id"]
    bad = client.post("/workflows/fail", json={"input": {"message": "m"}}).json()["run_id"]
    runs = client.get("/runs").json()["runs"]
    assert [r["run_id"] for r in runs] == [bad, ok]
    assert [
        r["run_id"] for r in client.get("/runs", params={"status": "failed"}).json()["runs"]
    ] == [bad]
    assert [
        r["run_id"] for r in client.get("/runs", params={"workflow": "greet"}).json()["runs"]
    ] == [ok]
    assert [r["run_id"] for r in client.get("/runs", params={"limit": 1}).json()["runs"]] == [bad]


def test_runs_pages_by_cursor_with_the_filter_before_the_limit(serve: Callable[..., str]) -> None:
    with httpx.Client(base_url=serve(), timeout=10) as client:  # no worker: runs stay queued
        started = [
            client.post("/workflows/greet/start", json={"input": {"name": str(i)}}).json()
            for i in range(5)
        ]
        old = [run["run_id"] for run in started]
        client.post(f"/runs/{old[0]}/cancel")
        seen, cursor = [], None
        for _ in range(5):
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = client.get("/runs", params=params).json()
            seen += [r["run_id"] for r in page["runs"]]
            client.post("/workflows/greet/start", json={"input": {"name": "new"}})
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == old[::-1]
        only = client.get("/runs", params={"status": "cancelled", "limit": 1}).json()
        assert ([r["run_id"] for r in only["runs"]], only["next_cursor"]) == ([old[0]], None)
        refused = client.get("/runs", params={"cursor": "not a cursor"})
        assert refused.status_code == 422
        assert refused.json()["error"]["fields"][0]["field"] == "query.cursor"


def test_cancel_a_queued_run(serve: Callable[..., str]) -> None:
    with httpx.Client(base_url=serve(), timeout=10) as client:  # no worker: the run stays queued
        run_id = client.post("/workflows/greet/start", json={"input": {"name": "q"}}).json()[
            "run_id"
        ]
        reply = client.post(f"/runs/{run_id}/cancel").json()
        assert reply == {"run_id": run_id, "outcome": "cancelled", "status": "cancelled"}
        with client.stream("GET", f"/runs/{run_id}/events") as stream:
            assert [f.event for f in events(stream)] == ["run.queued", "run.cancelled"]


def test_a_deployed_workflow_is_served_by_name(
    serve: Callable[..., str], worker: Callable[..., Any], runtime: Runtime
) -> None:
    @nf.workflow(name="deployed_add")
    def add(a: int, b: int = 1) -> int:
        """Add two numbers."""
        return a + b

    worker()  # no --app: it runs the deployed, signed code
    with httpx.Client(base_url=serve(app_module=None), timeout=20) as client:
        assert client.get("/workflows").json()["workflows"] == []
        add.deploy(runtime=runtime)
        (info,) = client.get("/workflows").json()["workflows"]
        assert (info["name"], info["source"], info["description"]) == (
            "deployed_add",
            "deployed",
            "Add two numbers.",
        )
        assert info["input_schema"]["required"] == ["a"]
        assert client.post("/workflows/deployed_add", json={"input": {"a": "x"}}).status_code == 422
        body = client.post("/workflows/deployed_add", json={"input": {"a": 2, "b": 5}}).json()
        assert (body["status"], body["output"]) == ("succeeded", 7)


def _poll(client: httpx.Client, run_id: str, timeout_s: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run: dict[str, Any] = client.get(f"/runs/{run_id}").json()
        if run["status"] in ("succeeded", "failed", "cancelled"):
            return run
        time.sleep(0.05)
    raise TimeoutError(f"run {run_id} did not end")


def test_a_deployed_name_whose_code_is_unreadable_is_listed_with_the_problem(
    serve: Callable[..., str], r: Any
) -> None:
    from nbflow import constants as c

    r.hset(c.DEPLOYED, "ghost", "0" * 32)
    with httpx.Client(base_url=serve(app_module=None), timeout=10) as client:
        (ghost,) = client.get("/workflows").json()["workflows"]
    assert (ghost["name"], ghost["source"]) == ("ghost", "deployed")
    assert "missing" in ghost["problem"]
    assert ghost["input_schema"]["type"] == "object"


def test_app_workflows_run_on_workers_started_without_that_app(
    serve: Callable[..., str], worker: Callable[..., Any]
) -> None:
    # The API ships an --app workflow by reference with each run, so any worker
    # that can import its module runs it: the workers need no --app of their own.
    worker()
    with httpx.Client(base_url=serve(), timeout=20) as http:
        reply = http.post("/workflows/greet", json={"input": {"name": "Ada"}})
    assert reply.status_code == 200, reply.text
    assert reply.json()["status"] == "succeeded"
