"""DataFrames and plotly figures over folded traces.

pandas and plotly are imported inside the functions so that ``import nbflow``
stays fast.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ._fold import RunState, SpanState
from ._spanstate import start_order

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

SPAN_COLUMNS = [
    "run_id", "span_id", "parent_id", "name", "kind", "status", "start", "end", "duration_ms",
    "attempts", "cached", "model", "input_tokens", "output_tokens", "total_tokens", "cost_usd",
    "error", "error_type", "depth", "restarts", "step", "input", "output", "cache_key",
    "rollup_tokens", "rollup_cost_usd",
]  # fmt: skip

STATUS_COLORS = {
    "ok": "#2e9e5b",
    "error": "#d64545",
    "cancelled": "#9a9a9a",
    "running": "#3b82c4",
}


def _span_row(run_id: str, span: SpanState) -> dict[str, Any]:
    inp, out = span.input_tokens, span.output_tokens
    return {
        "run_id": run_id,
        "span_id": span.span_id,
        "parent_id": span.parent_id,
        "name": span.name,
        "kind": span.kind,
        "status": span.status,
        "start": span.start,
        "end": span.end,
        "duration_ms": span.duration_ms,
        "attempts": span.attempts,
        "cached": span.cached,
        "model": span.model,
        "input_tokens": inp,
        "output_tokens": out,
        "total_tokens": inp + out,
        "cost_usd": span.cost_usd,
        "error": span.error,
        "error_type": span.error_type,
        "depth": span.depth,
        "restarts": span.restarts,
        "step": span.step,
        "input": span.input,
        "output": span.output,
        "cache_key": span.cache_key,
        "rollup_tokens": span.rollup["tokens"],
        "rollup_cost_usd": span.rollup["cost_usd"],
    }


def spans_frame(state: RunState) -> pd.DataFrame:
    import pandas as pd

    rows = [_span_row(state.run_id, s) for s in state.spans.values()]
    frame = pd.DataFrame(rows, columns=SPAN_COLUMNS)
    for col in ("start", "end"):
        frame[col] = pd.to_datetime(frame[col], unit="s", utc=True)
    return frame


def spans_frame_many(states: Iterable[RunState]) -> pd.DataFrame:
    import pandas as pd

    frames = [spans_frame(s) for s in states]
    if not frames:
        return spans_frame(RunState())
    return pd.concat(frames, ignore_index=True)


def events_frame(run_id: str, events: list[dict[str, Any]]) -> pd.DataFrame:
    import pandas as pd

    common = ("id", "type", "ts", "span_id")
    rows = []
    for e in events:
        data = {k: v for k, v in e.items() if k not in common}
        rows.append(
            {
                "run_id": run_id,
                "id": e.get("id"),
                "type": e.get("type"),
                "ts": e.get("ts"),
                "span_id": e.get("span_id"),
                "data": json.dumps(data, default=str),
            }
        )
    frame = pd.DataFrame(rows, columns=["run_id", "id", "type", "ts", "span_id", "data"])
    frame["ts"] = pd.to_datetime(frame["ts"], unit="s", utc=True)
    return frame


def _bar_label(row: Any) -> str:
    marks = []
    if row["cached"]:
        marks.append("cached")
    if row["attempts"] and row["attempts"] > 1:
        marks.append(f"{row['attempts']} attempts")
    return " · ".join(marks)


def timeline(spans: pd.DataFrame, *, title: str = "") -> go.Figure:
    """A Gantt of spans: one row per span in start order, indented by depth."""
    import pandas as pd
    import plotly.graph_objects as go

    fig = go.Figure()
    if spans.empty:
        fig.update_layout(title=title or "no spans")
        return fig
    frame = spans.sort_values("start").reset_index(drop=True)
    t0 = frame["start"].min()
    end = frame["end"].fillna(pd.Timestamp.now(tz="UTC"))
    frame = frame.assign(
        offset_ms=(frame["start"] - t0).dt.total_seconds() * 1000,
        length_ms=((end - frame["start"]).dt.total_seconds() * 1000).clip(lower=0.5),
        label=[
            f"{'  ' * d}{n} [{i}]"
            for i, (d, n) in enumerate(zip(frame["depth"], frame["name"], strict=True))
        ],
        marks=frame.apply(_bar_label, axis=1),
    )
    for status, group in frame.groupby("status", sort=False):
        fig.add_trace(
            go.Bar(
                y=group["label"],
                x=group["length_ms"],
                base=group["offset_ms"],
                orientation="h",
                name=str(status),
                marker_color=STATUS_COLORS.get(str(status), "#888"),
                marker_pattern_shape=["/" if c else "" for c in group["cached"]],
                text=group["marks"],
                textposition="auto",
                customdata=group[["kind", "attempts", "total_tokens"]],
                hovertemplate=(
                    "%{y}<br>%{x:.1f} ms<br>kind %{customdata[0]}, attempts %{customdata[1]}, "
                    "tokens %{customdata[2]}<extra>%{fullData.name}</extra>"
                ),
            )
        )
    fig.update_layout(
        title=title,
        barmode="overlay",
        xaxis_title="ms since run start",
        yaxis={
            "autorange": "reversed",
            "categoryorder": "array",
            "categoryarray": list(frame["label"]),
        },
        height=max(240, 22 * len(frame) + 120),
        legend_title="status",
    )
    return fig


def slowest(spans: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    return spans.sort_values("duration_ms", ascending=False).head(n)[
        ["name", "kind", "status", "duration_ms", "attempts", "cached"]
    ]


def tokens_by_model(spans: pd.DataFrame) -> pd.DataFrame:
    llm = spans[(spans["kind"] == "llm") & ~spans["cached"].astype(bool)]
    return (
        llm.groupby("model", dropna=False)[
            ["input_tokens", "output_tokens", "total_tokens", "cost_usd"]
        ]
        .sum()
        .assign(calls=llm.groupby("model", dropna=False).size())
        .sort_values("total_tokens", ascending=False)
    )


def retries_by_component(spans: pd.DataFrame) -> pd.DataFrame:
    grouped = spans.assign(retries=(spans["attempts"] - 1).clip(lower=0)).groupby("name")
    return grouped.agg(
        calls=("span_id", "size"),
        retries=("retries", "sum"),
        errors=("status", lambda s: int((s == "error").sum())),
    ).sort_values("retries", ascending=False)


def span_table(state: RunState) -> str:
    """The span tree as aligned text: name, status, duration, attempts, tokens."""
    lines = [f"run {state.run_id}  {state.workflow or ''}  {state.status}"]
    children: dict[str | None, list[SpanState]] = {}
    for span in state.spans.values():
        children.setdefault(span.parent_id, []).append(span)

    def walk(parent: str | None, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=start_order):
            lines.append(_span_line(span, depth))
            walk(span.span_id, depth + 1)

    walk(None, 0)
    return "\n".join(lines)


def _span_line(span: SpanState, depth: int) -> str:
    dur = "…" if span.duration_ms is None else f"{span.duration_ms:9.1f} ms"
    extra = span.marks()
    if span.error:
        extra.append(span.error.splitlines()[0][:80])
    name = f"{'  ' * depth}{span.name}"
    return f"  {name:<36} {span.kind:<9} {span.status:<9} {dur:>12}  {', '.join(extra)}"
