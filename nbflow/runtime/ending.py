"""How a run's end is recorded: its terminal event, and the metadata fields that
let listings show the outcome without reading the log."""

from __future__ import annotations

import logging
import time
from typing import Any

from .. import _events as ev
from .._preview import preview
from .._step import describe_error
from .._tracebacks import format_traceback
from . import codeship
from .protocol import dumps

log = logging.getLogger("nbflow.worker")


def ending(
    run_id: str,
    status: str,
    *,
    value: Any,
    error: BaseException | None,
    reason: str | None,
    redact: tuple[str, ...],
    progress: dict[str, str],
    secret: bytes,
) -> tuple[ev.Event, dict[str, Any]]:
    """The terminal event of a run that ended with ``status``, and its metadata fields."""
    fields: dict[str, Any] = {"ended_at": repr(time.time())}
    if progress:
        final = {"succeeded": "done", "cancelled": "cancelled"}.get(status, "failed")  # as the fold
        steps = {k: final if v in ("running", "retrying") else v for k, v in progress.items()}
        fields["progress"] = dumps(steps)
    if status == "succeeded":
        shown = preview(value, redact=redact)
        fields["output"] = dumps(shown)
        try:
            fields["result"] = codeship.pack(value, secret, codeship.result_for(run_id))
        except Exception as pickling:
            problem = (
                f"its return value cannot be pickled ({describe_error(pickling)}); "
                "only its preview is kept"
            )
            fields["result_error"] = problem
            log.warning("run %s: %s", run_id, problem)
            return ev.make(ev.RUN_SUCCEEDED, output=shown, result_error=problem), fields
        return ev.make(ev.RUN_SUCCEEDED, output=shown), fields
    event = error_event(status, error, reason)
    keys = ("error", "error_type", "traceback", "reason")
    fields.update({k: str(event[k]) for k in keys if event.get(k)})
    return event, fields


def error_event(status: str, error: BaseException | None, reason: str | None) -> ev.Event:
    if status == "cancelled":
        return ev.make(ev.RUN_CANCELLED, reason=reason or "cancelled")
    assert error is not None
    return ev.make(
        ev.RUN_FAILED,
        error=describe_error(error),
        error_type=type(error).__name__,
        traceback=format_traceback(error),
        reason=reason or "error",
    )
