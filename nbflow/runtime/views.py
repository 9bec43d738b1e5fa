"""Run listings as DataFrames."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .._waitinfo import describe_wait, wait_of

if TYPE_CHECKING:
    import pandas as pd

RUN_COLUMNS = [
    "run_id", "workflow", "status", "created_at", "started_at", "ended_at", "duration_s",
    "attempts", "restarts", "reason", "notebook", "kernel", "user", "input_tokens",
    "output_tokens", "total_tokens", "cost_usd", "error", "waiting_for",
]  # fmt: skip


def run_row(meta: dict[str, Any]) -> dict[str, Any]:
    row = {col: meta.get(col) for col in RUN_COLUMNS}
    started, ended = meta.get("started_at"), meta.get("ended_at")
    if started is not None:
        row["duration_s"] = (ended if ended is not None else time.time()) - started
    for col in ("attempts", "restarts", "input_tokens", "output_tokens", "total_tokens"):
        row[col] = int(row[col] or 0)
    row["cost_usd"] = float(row["cost_usd"] or 0.0)
    row["waiting_for"] = describe_wait(wait_of(meta))
    return row


def runs_frame(metas: list[dict[str, Any]]) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame([run_row(m) for m in metas], columns=RUN_COLUMNS)
    for col in ("created_at", "started_at", "ended_at"):
        frame[col] = pd.to_datetime(frame[col], unit="s", utc=True)
    return frame
