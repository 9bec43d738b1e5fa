"""The server extension's routes: the REST API's /runs routes under Jupyter's auth."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from nbflow.runtime.client import Runtime

from ..support import sse_events, wait_status

Fetch = Callable[..., Any]


async def test_runs_lists_every_run_with_its_notebook(jp_fetch: Fetch, finished: Any) -> None:
    run_id = finished(n=2, sleep_s=0.01)
    response = await jp_fetch("nbflow", "api", "runs")
    runs = json.loads(response.body)["runs"]
    [run] = [r for r in runs if r["run_id"] == run_id]
    assert (run["workflow"], run["status"], run["notebook"]) == (
        "paced",
        "succeeded",
        "analysis.ipynb",
    )
    assert run["duration_s"] > 0


async def test_runs_filter_by_status(jp_fetch: Fetch, finished: Any) -> None:
    ok, bad = finished(n=1, sleep_s=0.01), finished("broken")
    response = await jp_fetch("nbflow", "api", "runs", params={"status": "failed"})
    assert [r["run_id"] for r in json.loads(response.body)["runs"]] == [bad]
    assert ok != bad


async def test_runs_page_by_cursor_as_the_rest_api_does(jp_fetch: Fetch, finished: Any) -> None:
    first, second = finished(n=1, sleep_s=0.01), finished(n=1, sleep_s=0.01)
    page = json.loads((await jp_fetch("nbflow", "api", "runs", params={"limit": 1})).body)
    assert [r["run_id"] for r in page["runs"]] == [second]
    params = {"limit": 1, "cursor": page["next_cursor"]}
    rest = json.loads((await jp_fetch("nbflow", "api", "runs", params=params)).body)
    assert ([r["run_id"] for r in rest["runs"]], rest["next_cursor"]) == ([first], None)


async def test_run_detail_has_output_and_progress(jp_fetch: Fetch, finished: Any) -> None:
    run_id = finished(n=2, sleep_s=0.01)
    detail = json.loads((await jp_fetch("nbflow", "api", "runs", run_id)).body)
    assert detail["output"] == 1
    assert [s["step"] for s in detail["progress"]] == ["step 0", "step 1"]


async def test_unknown_run_is_a_json_404(jp_fetch: Fetch, runtime: Runtime) -> None:
    with pytest.raises(HTTPClientError) as caught:
        await jp_fetch("nbflow", "api", "runs", "nosuchrun")
    assert caught.value.code == 404
    assert caught.value.response is not None
    assert json.loads(caught.value.response.body)["error"]["type"] == "run_not_found"


async def test_events_replay_then_resume_after_last_event_id(
    jp_fetch: Fetch, finished: Any
) -> None:
    run_id = finished(n=3, sleep_s=0.01)
    response = await jp_fetch("nbflow", "api", "runs", run_id, "events")
    assert response.headers["Content-Type"] == "text/event-stream"
    events = sse_events(response.body.decode())
    assert events[0]["type"] == "run.queued" and events[-1]["type"] == "run.succeeded"
    resumed = await jp_fetch(
        "nbflow", "api", "runs", run_id, "events", headers={"Last-Event-ID": events[4]["id"]}
    )
    assert sse_events(resumed.body.decode()) == events[5:]
    after = await jp_fetch(
        "nbflow", "api", "runs", run_id, "events", params={"after": events[-2]["id"]}
    )
    assert sse_events(after.body.decode()) == events[-1:]


async def test_events_reject_a_malformed_position(jp_fetch: Fetch, finished: Any) -> None:
    run_id = finished(n=1, sleep_s=0.01)
    with pytest.raises(HTTPClientError) as caught:
        await jp_fetch("nbflow", "api", "runs", run_id, "events", params={"after": "yesterday"})
    assert caught.value.code == 400


async def test_cancel_stops_a_running_run(jp_fetch: Fetch, runtime: Runtime, worker: Any) -> None:
    worker(app="tests.viewer.viewer_apps")
    run = runtime.start("paced", {"n": 100, "sleep_s": 0.05})
    response = await jp_fetch("nbflow", "api", "runs", run.id, "cancel", method="POST", body="")
    assert json.loads(response.body)["outcome"] in ("cancelled", "requested")
    assert run.wait(timeout_s=20) == "cancelled"
    events = sse_events((await jp_fetch("nbflow", "api", "runs", run.id, "events")).body.decode())
    assert events[-1]["type"] == "run.cancelled"


async def test_routes_need_jupyter_auth(jp_fetch: Fetch, runtime: Runtime) -> None:
    with pytest.raises(HTTPClientError) as caught:
        await jp_fetch("nbflow", "api", "runs", headers={"Authorization": ""})
    assert caught.value.code == 403


async def test_events_arrive_live_while_the_run_goes_on(
    jp_fetch: Fetch, runtime: Runtime, worker: Any
) -> None:
    worker(app="tests.viewer.viewer_apps")
    run = runtime.start("paced", {"n": 5, "sleep_s": 0.2})
    chunks: list[tuple[bytes, str]] = []

    def received(chunk: bytes) -> None:
        chunks.append((chunk, run.status()))

    await jp_fetch("nbflow", "api", "runs", run.id, "events", streaming_callback=received)
    assert "running" in [status for _chunk, status in chunks]  # not one answer at the end
    events = sse_events(b"".join(chunk for chunk, _status in chunks).decode())
    assert [e["type"] for e in events].count("span.finished") == 6
    assert events[-1]["type"] == "run.succeeded"


@pytest.mark.parametrize("limit", ["many", "0", "1001"])
async def test_runs_reject_a_bad_limit_as_the_rest_api_does(
    jp_fetch: Fetch, runtime: Runtime, limit: str
) -> None:
    with pytest.raises(HTTPClientError) as caught:
        await jp_fetch("nbflow", "api", "runs", params={"limit": limit})
    assert caught.value.code == 422
    assert caught.value.response is not None
    assert json.loads(caught.value.response.body)["error"]["fields"][0]["field"] == "query.limit"


async def test_input_answers_a_waiting_run_and_refuses_what_does_not_fit(
    jp_fetch: Fetch, runtime: Runtime, worker: Any
) -> None:
    worker(app="tests.viewer.viewer_apps")
    run = runtime.start("approval", {})
    wait_status(runtime.redis, run.id, {"waiting"})
    listed = json.loads((await jp_fetch("nbflow", "api", "runs")).body)["runs"]
    assert [r["wait"]["prompt"] for r in listed if r["run_id"] == run.id] == [
        "Publish the otter post?"
    ]

    async def answer(body: str, name: str = "approve") -> Any:
        return await jp_fetch(
            "nbflow", "api", "runs", run.id, "input", name, method="POST", body=body
        )

    for body, code, kind in [
        ('{"value": "yes"}', 422, "invalid_input"),
        ("{}", 422, "invalid_input"),
        ("not json", 422, "invalid_input"),
    ]:
        with pytest.raises(HTTPClientError) as caught:
            await answer(body)
        assert caught.value.code == code, body
        assert caught.value.response is not None
        assert json.loads(caught.value.response.body)["error"]["type"] == kind
    with pytest.raises(HTTPClientError) as caught:
        await answer('{"value": true}', name="other")
    assert caught.value.code == 409
    accepted = await answer('{"value": true}')
    assert accepted.code == 202
    assert json.loads(accepted.body)["name"] == "approve"
    assert run.result(timeout_s=20) == "published"
    with pytest.raises(HTTPClientError) as caught:
        await answer('{"value": true}')
    assert caught.value.code == 409


async def test_a_renderer_drawing_an_output_stops_the_kernels_follower_until_the_end(
    jp_fetch: Fetch, runtime: Runtime, worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from nbflow.jupyter import view

    monkeypatch.setattr(view, "OWNER_CHECK_S", 0.1)
    worker(app="tests.viewer.viewer_apps")
    run = runtime.start("paced", {"n": 12, "sleep_s": 0.25})
    live = view.LiveView(run, widget=False).start()
    await asyncio.sleep(0.5)
    assert not live.drawn_elsewhere and live.follower.events  # following the log
    path = ("nbflow", "api", "runs", run.id, "outputs", live.view_key)
    await jp_fetch(*path, method="POST", body="")
    for _ in range(50):
        if live.drawn_elsewhere:
            break
        await asyncio.sleep(0.05)
    assert live.drawn_elsewhere and run.status() == "running"
    read = len(live.follower.events)
    await asyncio.sleep(1.0)
    assert len(live.follower.events) == read  # no longer reading the log
    assert await asyncio.to_thread(live.wait, 30)
    assert live.state.status == "succeeded"  # the end, and everything before it, folded once
    assert live.event_ids == [e["id"] for e in run.events(follow=False)]
    with pytest.raises(HTTPClientError) as caught:
        await jp_fetch(*path[:-1], "not-hex", method="POST", body="")
    assert caught.value.code == 400
