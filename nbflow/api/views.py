"""Runs as the API shows them, from their metadata hash."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

from .._waitinfo import wait_of
from ..runtime import codeship
from ..runtime.protocol import decode_meta
from .models import RunDetail, RunError, RunSummary, Step, Usage, Wait

log = logging.getLogger("nbflow.api")


def summary(meta: dict[str, Any]) -> RunSummary:
    started, ended = meta.get("started_at"), meta.get("ended_at")
    duration_s = (
        None if started is None else (ended if ended is not None else time.time()) - started
    )
    usage = Usage(
        **{k: meta[k] for k in Usage.model_fields if isinstance(meta.get(k), int | float)}
    )
    return RunSummary(
        run_id=str(meta.get("run_id", "")),
        workflow=str(meta.get("workflow", "")),
        status=meta.get("status", "queued"),
        reason=meta.get("reason"),
        created_at=_when(meta.get("created_at")),
        started_at=_when(started),
        ended_at=_when(ended),
        duration_s=duration_s,
        attempts=int(meta.get("attempts") or 0),
        restarts=int(meta.get("restarts") or 0),
        usage=usage,
        wait=_wait(meta),
    )


def _wait(meta: dict[str, Any]) -> Wait | None:
    wait = wait_of(meta)
    return None if wait is None else Wait.model_validate(wait)


def detail(raw: dict[bytes, bytes], secret: bytes) -> RunDetail:
    meta = decode_meta(raw)
    progress = meta.get("progress")
    steps = (
        [Step(step=k, state=str(v)) for k, v in progress.items()]
        if isinstance(progress, dict)
        else []
    )
    return RunDetail(
        **summary(meta).model_dump(),
        input=_input(meta.get("input")),
        output=output(meta, raw.get(b"result"), secret),
        error=error(meta),
        progress=steps,
    )


def output(meta: dict[str, Any], blob: bytes | None, secret: bytes) -> Any:
    """The run's return value if it is JSON-serialisable, else the preview its log recorded."""
    if meta.get("status") != "succeeded":
        return None
    if blob is not None:
        try:
            value = codeship.unpack(blob, secret, codeship.result_for(str(meta.get("run_id"))))
            json.dumps(value, allow_nan=False)
        except Exception as problem:  # not JSON, or not loadable in this process
            log.debug("run %s: showing the output preview (%s)", meta.get("run_id"), problem)
        else:
            return value
    return meta.get("output")


def error(meta: dict[str, Any]) -> RunError | None:
    if meta.get("status") != "failed":
        return None
    kind = str(meta.get("error_type") or "Error")
    text = str(meta.get("error") or meta.get("reason") or "")
    return RunError(
        type=kind,
        message=text.removeprefix(f"{kind}: "),  # the log's error line starts with the type
        reason=meta.get("reason"),
        traceback=meta.get("traceback"),
    )


def _input(shown: Any) -> Any:
    # Runs started by name carry keyword arguments only: show them as they were posted.
    if isinstance(shown, dict) and not shown.get("args"):
        return shown.get("kwargs", {})
    return shown


def _when(ts: Any) -> datetime | None:
    return datetime.fromtimestamp(ts, tz=UTC) if isinstance(ts, int | float) else None
