"""Answering a waiting run over HTTP: POST /runs/{id}/input/{name}, against real workers."""

from __future__ import annotations

import time
from typing import Any

import httpx

from nbflow.runtime.client import Runtime


def start_review(client: httpx.Client) -> str:
    reply = client.post("/workflows/review/start", json={"input": {"draft": "the otter post"}})
    assert reply.status_code == 202
    run_id: str = reply.json()["run_id"]
    return run_id


def until_waiting_for(client: httpx.Client, run_id: str, name: str) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        run: dict[str, Any] = client.get(f"/runs/{run_id}").json()
        if run["status"] == "waiting" and run["wait"]["name"] == name:
            return run
        time.sleep(0.05)
    raise TimeoutError(f"run {run_id} never waited for {name!r}")


def until_ended(client: httpx.Client, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        run: dict[str, Any] = client.get(f"/runs/{run_id}").json()
        if run["status"] in ("succeeded", "failed", "cancelled"):
            return run
        time.sleep(0.05)
    raise TimeoutError(f"run {run_id} did not end")


def answer(client: httpx.Client, run_id: str, name: str, value: Any) -> httpx.Response:
    return client.post(f"/runs/{run_id}/input/{name}", json={"value": value})


def test_a_waiting_run_shows_its_wait_and_an_answer_over_rest_resumes_it(
    client: httpx.Client,
) -> None:
    run_id = start_review(client)
    run = until_waiting_for(client, run_id, "approve")
    assert run["wait"] == {
        "kind": "input",
        "name": "approve",
        "prompt": "Publish the otter post?",
        "schema": {"type": "boolean"},
        "until": None,
        "timeout_s": None,
        "runs": None,
    }
    listed = client.get("/runs", params={"status": "waiting"}).json()["runs"]
    assert [(r["run_id"], r["wait"]["name"]) for r in listed] == [(run_id, "approve")]

    reply = answer(client, run_id, "approve", True)
    assert reply.status_code == 202
    accepted = reply.json()
    assert (accepted["run_id"], accepted["name"]) == (run_id, "approve")
    assert accepted["status"] in ("queued", "running", "waiting")  # the run went on

    until_waiting_for(client, run_id, "copies")
    assert answer(client, run_id, "copies", {"n": 3}).status_code == 202
    ended = until_ended(client, run_id)
    assert (ended["status"], ended["output"], ended["wait"]) == ("succeeded", "published 3", None)


def test_a_value_that_fails_the_schema_is_422_naming_the_field_and_nothing_is_recorded(
    client: httpx.Client, runtime: Runtime
) -> None:
    run_id = start_review(client)
    until_waiting_for(client, run_id, "approve")
    refused = answer(client, run_id, "approve", "yes")
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["type"] == "invalid_input"
    assert error["message"] == "input 'approve': 'yes' is not of type 'boolean'"
    assert error["fields"] == [{"field": "value", "message": error["message"]}]

    assert answer(client, run_id, "approve", True).status_code == 202
    until_waiting_for(client, run_id, "copies")
    nested = answer(client, run_id, "copies", {"n": 0})
    assert nested.status_code == 422
    assert nested.json()["error"]["message"] == "input 'copies/n': 0 is less than the minimum of 1"
    assert client.get(f"/runs/{run_id}").json()["status"] == "waiting"  # still asking
    logged = [e["type"] for e in runtime.attach(run_id).events(follow=False)]
    assert logged.count("input.received") == 1  # only the good answer


def test_a_second_answer_a_wrong_name_and_a_run_not_waiting_are_409(
    client: httpx.Client,
) -> None:
    run_id = start_review(client)
    until_waiting_for(client, run_id, "approve")
    wrong = answer(client, run_id, "publish", True)
    assert wrong.status_code == 409
    assert wrong.json()["error"] == {
        "type": "input_conflict",
        "message": f"run {run_id} waits for input 'approve', not 'publish'",
    }
    assert answer(client, run_id, "approve", False).status_code == 202
    again = answer(client, run_id, "approve", True)
    assert again.status_code == 409
    assert again.json()["error"]["message"] == f"run {run_id}: input 'approve' was answered already"
    assert until_ended(client, run_id)["output"] == "dropped"
    after = answer(client, run_id, "approve", True)
    assert after.status_code == 409
    assert after.json()["error"]["message"] == f"run {run_id}: input 'approve' was answered already"


def test_unknown_run_is_404_and_a_body_without_value_is_422(client: httpx.Client) -> None:
    missing = answer(client, "0123456789abcdef", "approve", True)
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "run_not_found"
    run_id = start_review(client)
    until_waiting_for(client, run_id, "approve")
    empty = client.post(f"/runs/{run_id}/input/approve", json={})
    assert empty.status_code == 422
    assert empty.json()["error"]["fields"][0]["field"] == "value"
    assert answer(client, run_id, "approve", None).status_code == 422  # null is not a boolean


def test_openapi_documents_the_input_route_and_the_waiting_status(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    route = spec["paths"]["/runs/{run_id}/input/{name}"]["post"]
    assert set(route["responses"]) >= {"202", "404", "409", "422"}
    body = route["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert spec["components"]["schemas"][body.rsplit("/", 1)[1]]["required"] == ["value"]
    summary = spec["components"]["schemas"]["RunSummary"]["properties"]
    status = summary["status"]
    assert "waiting" in status.get("enum", []) or "waiting" in str(status)
    assert "wait" in summary


def test_a_sync_request_for_a_run_that_asks_a_person_answers_202_waiting_at_once(
    client: httpx.Client,
) -> None:
    started = time.monotonic()
    reply = client.post("/workflows/review", json={"input": {"draft": "a post"}})
    assert reply.status_code == 202
    assert reply.json()["status"] == "waiting"
    assert time.monotonic() - started < 10  # not held until the request's time-out
    run_id = reply.json()["run_id"]
    assert answer(client, run_id, "approve", False).status_code == 202
    assert until_ended(client, run_id)["status"] == "succeeded"


def test_a_second_answer_is_refused_saying_it_was_answered(client: httpx.Client) -> None:
    run_id = start_review(client)
    until_waiting_for(client, run_id, "approve")
    assert answer(client, run_id, "approve", False).status_code == 202
    until_ended(client, run_id)
    second = answer(client, run_id, "approve", True)
    assert second.status_code == 409
    assert "answered already" in second.json()["error"]["message"]


def test_a_published_state_reads_back_over_rest_and_rebuilds_from_the_stream(
    client: httpx.Client,
) -> None:
    import json

    from nbflow._state import apply

    reply = client.post("/workflows/planner", json={"input": {"steps": 4}})
    assert reply.status_code == 200
    run_id, final = reply.json()["run_id"], reply.json()["output"]
    state = client.get(f"/runs/{run_id}/state/plan").json()
    assert state == {"run_id": run_id, "name": "plan", "published": True, "value": final}
    missing = client.get(f"/runs/{run_id}/state/other").json()
    assert missing["published"] is False and missing["value"] is None
    assert client.get("/runs/0123456789abcdef/state/plan").status_code == 404
    rebuilt = None
    with client.stream("GET", f"/runs/{run_id}/events") as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                event = json.loads(line[5:])
                if event["type"] == "state.patch":
                    rebuilt = apply(rebuilt, event["patch"])
    assert rebuilt == final
