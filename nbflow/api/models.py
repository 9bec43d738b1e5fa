"""Request and response bodies: what ``/docs`` shows, and what every route returns."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..runtime.listing import CURSOR_PATTERN, RunQuery

Status = Literal["queued", "running", "waiting", "succeeded", "failed", "cancelled"]
Outcome = Literal["cancelled", "requested", "finished"]


class RunRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"input": {"topic": "otters"}}]}
    )

    input: dict[str, Any] | None = Field(
        None,
        description="The workflow's arguments by name (none: null, {} or left out); "
        "GET /workflows has each one's JSON Schema.",
    )


class WorkflowInfo(BaseModel):
    name: str
    description: str
    source: Literal["app", "deployed"] = Field(
        description="served from --app, or deployed from a notebook"
    )
    input_schema: dict[str, Any] = Field(description="JSON Schema of `input`, from the type hints")
    problem: str | None = Field(
        None, description="why a deployed workflow's code could not be read here"
    )


class WorkflowList(BaseModel):
    workflows: list[WorkflowInfo]


class RunStarted(BaseModel):
    run_id: str
    status: Status


class RunError(BaseModel):
    type: str = Field(description="the exception's class name")
    message: str = Field(description="the exception's message, without its class name")
    reason: str | None = Field(None, description="e.g. 'error', 'unknown_workflow', 'max_restarts'")
    traceback: str | None = None


class RunResult(BaseModel):
    run_id: str
    status: Status
    output: Any = Field(None, description="the return value if JSON-serialisable, else its preview")
    error: RunError | None = None


class Usage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float = 0.0
    llm_calls: int = 0


class Step(BaseModel):
    step: str
    state: str = Field(description="pending, running, done, failed or retrying")


class Wait(BaseModel):
    """What a ``waiting`` run waits for: a person's input, a timer, or its child runs."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    kind: str = Field(description="input, sleep or children")
    name: str | None = Field(None, description="the input's name (POST /runs/{id}/input/{name})")
    prompt: str | None = Field(None, description="what the run asks")
    schema_: dict[str, Any] | None = Field(
        None, alias="schema", description="JSON Schema an input's value must match"
    )
    until: float | None = Field(
        None, description="epoch seconds: when the timer fires, or the input times out"
    )
    timeout_s: float | None = None
    runs: list[str] | None = Field(None, description="the child runs it waits for")


class RunSummary(BaseModel):
    run_id: str
    workflow: str
    status: Status
    reason: str | None = Field(None, description="why the run ended, or went back to the queue")
    created_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_s: float | None = None
    attempts: int = 0
    restarts: int = 0
    usage: Usage
    wait: Wait | None = Field(None, description="what the run waits for, while it is waiting")


class RunDetail(RunSummary):
    input: Any = Field(None, description="a preview of the arguments the run was started with")
    output: Any = Field(None, description="the return value if JSON-serialisable, else its preview")
    error: RunError | None = None
    progress: list[Step] = Field(
        default_factory=list, description="named steps, in the order first seen"
    )


class RunList(BaseModel):
    runs: list[RunSummary]
    next_cursor: str | None = Field(
        None, description="pass as `cursor` for the next page; null when no runs are left"
    )


class RunFilter(BaseModel):
    """``GET /runs``'s query: which runs, and which page of them (runtime/listing.py)."""

    limit: int = Field(100, ge=1, le=1000, description="runs in a page at most")
    cursor: str | None = Field(
        None, pattern=CURSOR_PATTERN, description="a page's `next_cursor`: go on after it"
    )
    status: Status | None = None
    workflow: str | None = None
    since: float | None = Field(
        None, ge=0, allow_inf_nan=False, description="created at or after (Unix seconds)"
    )
    parent: str | None = Field(None, description="runs started by this run (its children)")
    notebook: str | None = Field(None, description="runs started from this notebook")

    def query(self) -> RunQuery:
        return RunQuery(self.status, self.workflow, self.since, self.parent, self.notebook)


class Cancelled(BaseModel):
    run_id: str
    outcome: Outcome = Field(
        description="cancelled (it was queued), requested (it stops at its next step), "
        "finished (too late)"
    )
    status: Status


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class InputBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"value": True}, {"value": "ship it"}]}
    )

    value: Any = Field(description="the answer: any JSON value that fits the wait's `schema`")


class StateValue(BaseModel):
    run_id: str
    name: str
    published: bool = Field(description="whether the run has published this state yet")
    value: Any = Field(
        None,
        description="its latest value (nf.publish); the event stream's state.patch "
        "events rebuild the same value",
    )


class InputAccepted(BaseModel):
    run_id: str
    name: str
    status: Status = Field(description="the run's status once the answer was recorded")
