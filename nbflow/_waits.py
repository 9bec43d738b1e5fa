"""Waits that free the worker: a person's input, a durable timer, child runs.

A wait inside a run on the runtime ends the attempt (``Suspend``): the run's
status becomes ``waiting``, its worker slot is freed, and nothing of it stays in
any process. What ends the wait (the input arriving, the timer firing, the last
child ending) is recorded as the wait's step and the run is queued again; the next
attempt replays the run's recorded steps, finds the wait's outcome and goes on.

Outside the runtime the same calls still work where they can: ``sleep`` sleeps,
and ``child.result()`` waits for the child in-process; an in-process run cannot be
told anything, so ``wait_for_input`` needs the runtime.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from . import _context as ctx
from . import _events as ev
from ._policies import Seconds, seconds
from .errors import ConfigError, InputTimeout, RunCancelled, RunFailed, Suspend

if TYPE_CHECKING:
    from ._workflow import Workflow
    from .runtime.run import Run

CHILD_POLL_MS = 2_000  # a parent waiting on children also looks at them this often


@dataclass(frozen=True)
class Answered:
    """What a wait for input was given (recorded as the wait's step)."""

    value: Any


@dataclass(frozen=True)
class TimedOut:
    """A wait for input that no one answered in time."""

    name: str
    timeout_s: float


@dataclass(frozen=True)
class ChildSucceeded:
    """A child run that succeeded: its parent reads the result from the child itself."""

    run_id: str


@dataclass(frozen=True)
class ChildEnded:
    """A child run that did not succeed, as its parent learns of it."""

    run_id: str
    workflow: str
    status: str
    error: str = ""
    error_type: str = ""
    traceback: str = ""


# --- inside a run --------------------------------------------------------------
def wait_for_input(
    name: str,
    *,
    prompt: str = "",
    schema: dict[str, Any] | None = None,
    timeout_s: Seconds | None = None,
) -> Any:
    """Wait for a person's answer to ``prompt`` (sent with ``run.send_input(name, value)``,
    REST, the CLI or the live view's form), validated against the JSON ``schema``.

    The worker is freed while the run waits. Raises ``nf.InputTimeout`` when
    ``timeout_s`` passes first.
    """
    frame = _frame("wait_for_input")
    if frame.run.runtime is None:
        raise ConfigError(
            f"nf.wait_for_input({name!r}) needs the runtime: submit the workflow "
            "(wf.submit(...)) so that someone can answer while it waits"
        )
    if schema is not None:
        check_schema(schema)
    limit_s = seconds(timeout_s, "timeout_s", allow_zero=False)
    frame.run.check()  # a cancelled run does not start waiting
    step = frame.run.call_step(frame, f"input:{name}", "")
    found, outcome = frame.run.recorded(step)
    if found:
        if isinstance(outcome, TimedOut):
            raise InputTimeout(f"no input {name!r} within {outcome.timeout_s:g} s")
        return outcome.value if isinstance(outcome, Answered) else outcome
    until = None if limit_s is None else time.time() + limit_s
    wait: dict[str, Any] = {"kind": "input", "name": name, "prompt": prompt, "schema": schema}
    wait.update({"until": until, "timeout_s": limit_s})
    frame.run.flush_published()
    raise Suspend(wait, step, until)


def sleep(duration_s: Seconds) -> None:
    """Sleep durably: on the runtime the worker is freed and the run resumes after it."""
    delay = seconds(duration_s, "sleep") or 0.0
    sleep_until(time.time() + delay)


def sleep_until(when: datetime | float) -> None:
    """Sleep until ``when`` (a datetime, naive ones in local time, or epoch seconds)."""
    until = when.timestamp() if isinstance(when, datetime) else float(when)
    frame = ctx.current()
    if frame is None or frame.run.runtime is None:
        time.sleep(max(0.0, until - time.time()))
        return
    frame.run.check()
    step = frame.run.call_step(frame, "sleep", "")
    found, _outcome = frame.run.recorded(step)
    if found or until <= time.time():
        return
    frame.run.flush_published()
    raise Suspend({"kind": "sleep", "until": until}, step, until)


def gather(*runs: Run) -> list[Any]:
    """The results of these runs, in order; inside a run the parent waits without a worker.

    A child that failed or was cancelled raises ``nf.RunFailed`` here, naming it.
    """
    frame = ctx.current()
    if frame is None or frame.run.runtime is None:
        return [run.result() for run in runs]
    frame.run.check()
    ids = [run.id for run in runs]
    digest = hashlib.blake2b(",".join(ids).encode(), digest_size=6).hexdigest()
    step = frame.run.call_step(frame, "gather", digest)
    outcomes = [frame.run.recorded(child_step(step, i)) for i in range(len(ids))]
    if all(found for found, _value in outcomes):
        return [_child_value(frame.run.runtime, value) for _found, value in outcomes]
    wait = {"kind": "children", "runs": ids}
    frame.run.flush_published()
    raise Suspend(wait, step, time.time() + CHILD_POLL_MS / 1000)


def child_step(step: str, index: int) -> str:
    """Where the outcome of the ``index``-th child of a gather is recorded."""
    return f"{step}#child{index}"


def _child_value(runtime: Any, value: Any) -> Any:
    if isinstance(value, ChildSucceeded):
        return runtime.result_of(value.run_id)
    if not isinstance(value, ChildEnded):
        return value
    if value.status == "cancelled":
        raise RunCancelled(f"child run {value.run_id} ({value.workflow}) was cancelled")
    raise RunFailed(
        f"child run {value.run_id} ({value.workflow}) failed: {value.error}",
        run_id=value.run_id,
        error_type=value.error_type,
        remote_traceback=value.traceback,
    )


def submit_child(
    frame: ctx.Frame, wf: Workflow, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Run:
    """``wf.submit(...)`` inside a run: a child run linked to it, made once.

    The child's id is derived from the parent's step, so a replayed submit names the
    run it made before instead of starting another.
    """
    from ._step import arg_digest, bound_arguments

    run = frame.run
    runtime = run.runtime
    assert runtime is not None
    step = run.call_step(frame, f"child:{wf.name}", arg_digest(bound_arguments(wf, args, kwargs)))
    child_id = hashlib.blake2b(f"{run.run_id}|{step}".encode(), digest_size=8).hexdigest()
    found, _value = run.recorded(step)
    if not found:
        runtime.submit(wf, args, kwargs, run_id=child_id, parent_id=run.run_id)
        started = ev.make(
            ev.CHILD_STARTED, span_id=frame.span_id, child_id=child_id, workflow=wf.name
        )
        pending = run.sink.commit_step(started, step, child_id)
        if pending is not None:
            pending.result()
    handle: Run = runtime.handle(child_id)
    return handle


def check_schema(schema: dict[str, Any]) -> None:
    try:
        text = json.dumps(schema, sort_keys=True)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"schema must be JSON: {error}") from None
    problem = _schema_problem(text)
    if problem:
        raise ConfigError(f"schema is not a valid JSON schema: {problem}")


@functools.lru_cache(maxsize=256)
def _schema_problem(text: str) -> str:
    """What is wrong with a schema ("" if nothing): checked once per schema and process."""
    import jsonschema

    schema = json.loads(text)
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as error:
        return str(error.message)
    return ""


def _frame(what: str) -> ctx.Frame:
    frame = ctx.current()
    if frame is None:
        raise ConfigError(f"nf.{what} is for code inside a workflow run")
    return frame
