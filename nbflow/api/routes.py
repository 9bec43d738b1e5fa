"""The routes: workflows by name, runs by id, and their event streams."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from .._events import STREAM_ID_PATTERN, parse_id
from ..constants import TERMINAL_STATUSES
from . import sse
from .errors import ApiError
from .limits import Streams
from .models import (
    Cancelled,
    ErrorBody,
    InputAccepted,
    InputBody,
    RunDetail,
    RunFilter,
    RunList,
    RunRequest,
    RunResult,
    RunStarted,
    StateValue,
    WorkflowInfo,
    WorkflowList,
)
from .reader import wait_until_ended
from .service import Service

router = APIRouter()

ERRORS = {
    400: "malformed Last-Event-ID or ?after=",
    404: "unknown workflow or run",
}
# One event of the stream (``: keep-alive`` comments are not events).
SSE_EVENT = {
    "type": "object",
    "required": ["id", "event", "data"],
    "properties": {
        "id": {"type": "string", "pattern": STREAM_ID_PATTERN, "description": "stream id"},
        "event": {"type": "string", "description": "the event's type"},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "description": "the event as JSON: its type, ts and id, and its own fields",
        },
    },
}
STREAMS = {
    sse.SSE: {
        "schema": SSE_EVENT,
        "example": 'id: 1718000000000-0\nevent: run.queued\ndata: {"type":"run.queued",...}\n\n',
    },
    sse.NDJSON: {
        "schema": {"type": "string", "description": "one event as JSON a line"},
        "example": '{"type":"run.queued","ts":1718000000.0,"id":"1718000000000-0",...}\n',
    },
}
RunBody = Annotated[RunRequest | None, Body()]
StreamId = {"pattern": STREAM_ID_PATTERN}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody, "description": ERRORS[code]} for code in codes}


def service(request: Request) -> Service:
    svc: Service = request.app.state.service
    return svc


def streams(request: Request) -> Streams:
    limit: Streams = request.app.state.streams
    return limit


@router.get("/healthz", tags=["server"], summary="Whether this API process is up (needs no token)")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/workflows",
    response_model=WorkflowList,
    tags=["workflows"],
    summary="Servable workflows, with the JSON Schema of each one's input",
)
async def list_workflows(request: Request) -> WorkflowList:
    served = await service(request).catalog.all()
    return WorkflowList(workflows=[WorkflowInfo(**s.describe()) for s in served])


@router.post(
    "/workflows/{name}",
    response_model=RunResult,
    tags=["workflows"],
    summary="Run a workflow: wait for its result, or stream its events",
    description=(
        "Waits for the run and returns `{run_id, status, output}` (202 `{run_id, status}` if "
        "`timeout_s` passes first, if the run waits for a person's input (answer it at "
        "`POST /runs/{id}/input/{name}`), or if this server shuts down meanwhile). With "
        "`Accept: text/event-stream` or `application/x-ndjson` it streams the run's events "
        "instead, from its first one to its terminal one; the `X-Nbflow-Run-Id` header names "
        "the run, for resuming at `GET /runs/{id}/events`."
    ),
    responses={
        200: {"content": STREAMS, "description": "the finished run, or its event stream"},
        202: {
            "model": RunStarted,
            "description": "still running (after `timeout_s`, or a shutdown), or waiting for input",
        },
        **errors(404),
    },
)
async def run_workflow(
    request: Request,
    name: str,
    body: RunBody = None,
    accept: Annotated[str | None, Header()] = None,
    timeout_s: Annotated[
        float | None, Query(gt=0, description="stop waiting after this long")
    ] = None,
) -> Response | RunResult:
    svc = service(request)
    with streams(request).slot() as slot:  # taken first: a refused request starts no run
        run_id = await svc.start(name, _input(body))
        media = sse.negotiate(accept)
        if media is not None:
            batches = svc.hub.follow(run_id, idle_s=request.app.state.keep_alive_s)
            headers = {"X-Nbflow-Run-Id": run_id}
            return sse.stream(
                batches, media, headers=headers, release=slot.hand_over(), stop=_draining(request)
            )
        ended = await _ended(request, svc, run_id, timeout_s)
    status = await svc.status(run_id)
    if not ended or status not in TERMINAL_STATUSES:  # or it waits for a person's answer
        started = {"run_id": run_id, "status": status}
        return JSONResponse(RunStarted.model_validate(started).model_dump(), status_code=202)
    return await svc.result(run_id)


def _input(body: RunRequest | None) -> dict[str, Any]:
    return (body.input if body is not None else None) or {}


def _draining(request: Request) -> asyncio.Event:
    draining: asyncio.Event = request.app.state.draining
    return draining


async def _ended(request: Request, svc: Service, run_id: str, timeout_s: float | None) -> bool:
    """Wait for the run to end: False after ``timeout_s``, as soon as the client has gone,
    or when this server starts shutting down."""
    ended = asyncio.ensure_future(wait_until_ended(svc.hub, run_id, or_asks=True))
    gone = asyncio.ensure_future(_client_gone(request))
    draining = asyncio.ensure_future(request.app.state.draining.wait())
    try:
        await asyncio.wait(
            {ended, gone, draining}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        if ended.done():
            ended.result()  # a failed read is the route's error
            return True
        return False
    finally:
        ended.cancel()
        gone.cancel()
        draining.cancel()


async def _client_gone(request: Request) -> None:
    # The body has been read: what the server passes on now is the client hanging up.
    while (await request.receive())["type"] != "http.disconnect":
        pass


@router.post(
    "/workflows/{name}/start",
    response_model=RunStarted,
    status_code=202,
    tags=["workflows"],
    summary="Start a workflow and return at once",
    responses=errors(404),
)
async def start_workflow(request: Request, name: str, body: RunBody = None) -> RunStarted:
    run_id = await service(request).start(name, _input(body))
    return RunStarted(run_id=run_id, status="queued")


@router.get(
    "/runs",
    response_model=RunList,
    tags=["runs"],
    summary="Runs, newest first: filtered, then a page of them",
    description="Every filter given holds before the limit. `next_cursor` passed as "
    "`cursor` gives the next page, without repeating or skipping a run while new ones "
    "start; null when no runs are left. A page looks through at most 10,000 runs, so a "
    "filter that matches few may give fewer than `limit` runs and a cursor to go on from.",
)
async def list_runs(request: Request, wanted: Annotated[RunFilter, Query()]) -> RunList:
    return await service(request).runs(wanted)


@router.get(
    "/runs/{run_id}",
    response_model=RunDetail,
    tags=["runs"],
    responses=errors(404),
    summary="A run: status, output or error, timestamps, token totals, progress steps",
)
async def get_run(request: Request, run_id: str) -> RunDetail:
    return await service(request).detail(run_id)


@router.get(
    "/runs/{run_id}/state/{name}",
    response_model=StateValue,
    tags=["runs"],
    responses=errors(404),
    summary="A state the run publishes (nf.publish): its latest value",
)
async def get_state(request: Request, run_id: str, name: str) -> StateValue:
    return await service(request).state(run_id, name)


@router.post(
    "/runs/{run_id}/cancel",
    response_model=Cancelled,
    tags=["runs"],
    responses=errors(404),
    summary="Cancel a run (a running one stops at its next component boundary)",
)
async def cancel_run(request: Request, run_id: str) -> Cancelled:
    return await service(request).cancel(run_id)


@router.get(
    "/runs/{run_id}/events",
    response_class=sse.EventStreamResponse,
    tags=["runs"],
    summary="A run's events: full replay, then live until its terminal event",
    description=(
        "Server-Sent Events: `id:` is the Redis stream id, `event:` the event type, `data:` the "
        "event as JSON. Resumes after `Last-Event-ID` (or `?after=`); `: keep-alive` comments "
        "while idle; closes after the terminal event. `Accept: application/x-ndjson` gives one "
        "JSON object a line instead."
    ),
    responses={200: {"content": STREAMS, "description": "the event stream"}, **errors(400, 404)},
)
async def run_events(
    request: Request,
    run_id: str,
    after: Annotated[
        str | None,
        Query(description="stream id to resume after; 0 replays all", json_schema_extra=StreamId),
    ] = None,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            description="stream id to resume after (wins over ?after=)",
            json_schema_extra=StreamId,
        ),
    ] = None,
    accept: Annotated[str | None, Header()] = None,
) -> Response:
    given = [p for p in (last_event_id, after) if p is not None]
    try:
        for text in given:  # each must be well formed, though Last-Event-ID wins
            parse_id(text)
    except ValueError as error:
        raise ApiError(400, "bad_event_id", str(error)) from None
    position = given[0] if given else "0"
    svc = service(request)
    await svc.exists(run_id)
    with streams(request).slot() as slot:
        batches = svc.hub.follow(run_id, position, idle_s=request.app.state.keep_alive_s)
        media = sse.negotiate(accept) or sse.SSE
        return sse.stream(batches, media, release=slot.hand_over(), stop=_draining(request))


@router.post(
    "/runs/{run_id}/input/{name}",
    response_model=InputAccepted,
    status_code=202,
    tags=["runs"],
    summary="Answer a run that waits for input (nf.wait_for_input): the run goes on",
    description=(
        "The value is checked against the wait's JSON Schema (`GET /runs/{id}` shows the "
        "run's `wait`: its name, prompt and schema) and recorded once; the run is queued "
        "again and resumes where it waited."
    ),
    responses={
        404: {"model": ErrorBody, "description": "unknown run"},
        409: {
            "model": ErrorBody,
            "description": "the run does not wait for this input: another one, none, "
            "or it was answered already",
        },
        422: {
            "model": ErrorBody,
            "description": "the value does not match the wait's schema; the message names "
            "the field",
        },
    },
)
async def send_input(
    request: Request, run_id: str, name: str, body: Annotated[InputBody, Body()]
) -> InputAccepted:
    return await service(request).send_input(run_id, name, body.value)
