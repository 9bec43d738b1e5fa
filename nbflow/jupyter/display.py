"""What a run looks like in a notebook output: one MIME bundle, readable without a kernel.

Every display of a run carries ``application/vnd.nbflow.run+json`` (the run id
and a bounded snapshot, enough for a front end to reconnect), a self-contained
``text/html`` snapshot of the live view (no JavaScript) and ``text/plain``, so a
saved, reopened or converted notebook still shows the last known state.
"""

from __future__ import annotations

import html
import time
from functools import cache
from pathlib import Path
from typing import Any

from .. import _events as ev
from .._fold import RunState, SpanState
from .._spanstate import start_order
from .._waitinfo import describe_wait

MIME = "application/vnd.nbflow.run+json"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
VERSION = 1
MAX_SNAPSHOT_SPANS = 200
MAX_SNAPSHOT_CHILDREN = 200
EMITTED_TAIL_CHARS = 2_000
STATIC = Path(__file__).parent / "static"


def read_events(run: Any) -> list[ev.Event]:
    """Everything in the run's log so far, without waiting."""
    if hasattr(run, "sink"):  # an in-process run
        return list(run.events())
    return list(run.events(follow=False))


def mode_of(run: Any) -> str:
    return "local" if hasattr(run, "sink") else "runtime"


def workflow_of(run: Any) -> str:
    # An in-process run knows its workflow; a runtime run's name comes from its log.
    return str(vars(run).get("workflow") or "")


def run_data(state: RunState, *, mode: str, workflow: str | None = None) -> dict[str, Any]:
    """The ``application/vnd.nbflow.run+json`` payload for a folded run."""
    return {
        "version": VERSION,
        "run_id": state.run_id,
        "workflow": state.workflow or workflow or "",
        "status": state.status,
        "mode": mode,
        "last_event_id": state.last_id,
        "snapshot": snapshot(state),
    }


def snapshot(state: RunState) -> dict[str, Any]:
    return {
        "status": state.status,
        "progress": {name: step.state for name, step in state.steps.items()},
        "spans": [span_dict(s) for s in pick_spans(state, MAX_SNAPSHOT_SPANS)],
        "usage": state.usage(),
        "emitted_tail": state.emitted[-EMITTED_TAIL_CHARS:],
        "error": state.error,
        "wait": state.wait if state.status == "waiting" else None,
        "children": children_list(state, MAX_SNAPSHOT_CHILDREN),
    }


def span_dict(span: SpanState) -> dict[str, Any]:
    return {
        "span_id": span.span_id,
        "parent_id": span.parent_id,
        "name": span.name,
        "kind": span.kind,
        "status": span.status,
        "duration_ms": None if span.duration_ms is None else round(span.duration_ms, 1),
        "attempts": span.attempts,
        "cached": span.cached,
        "tokens": span.tokens,
        "error": span.error,
    }


def pick_spans(state: RunState, limit: int) -> list[SpanState]:
    """At most ``limit`` spans in start order: failed and running first, then the shallowest."""
    spans = list(state.spans.values())
    if len(spans) > limit:
        spans.sort(key=lambda s: (s.status not in ("error", "running"), s.depth, start_order(s)))
        spans = spans[:limit]
    return sorted(spans, key=start_order)


def bundle(data: dict[str, Any], *, traceback: str | None = None) -> dict[str, Any]:
    return {
        MIME: data,
        "text/html": render_html(data, traceback=traceback),
        "text/plain": render_plain(data),
    }


def run_bundle(run: Any) -> tuple[dict[str, Any], RunState]:
    """A run's bundle as its log says now, and the folded state it was made from."""
    state = RunState(run.id)
    for event in read_events(run):
        state.apply(event)
    data = run_data(state, mode=mode_of(run), workflow=workflow_of(run))
    return bundle(data, traceback=state.traceback), state


# --- text/plain ---------------------------------------------------------------
def render_plain(data: dict[str, Any]) -> str:
    snap = data["snapshot"]
    lines = [
        f"<nbflow run {data['run_id']} {data['workflow']!r} {data['status']} ({data['mode']})>"
    ]
    if snap["progress"]:
        lines.append("  steps: " + ", ".join(f"{k} {v}" for k, v in snap["progress"].items()))
    usage = snap["usage"]
    if usage.get("llm_calls"):
        lines.append(
            f"  tokens: {usage['total_tokens']} ({usage['llm_calls']} LLM calls, "
            f"~${usage['cost_usd']:.4f})"
        )
    if snap.get("wait"):
        lines.append(f"  waiting for {describe_wait(snap['wait'])}")
    children = snap.get("children") or []
    if children:
        ended = sum(1 for c in children if c["status"] != "running")
        lines.append(f"  child runs: {len(children)} ({ended} ended)")
    if snap["error"]:
        lines.append(f"  error: {snap['error']}")
    return "\n".join(lines)


# --- text/html ----------------------------------------------------------------
@cache
def stylesheet() -> str:
    return (STATIC / "snapshot.css").read_text()


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def number(value: Any, digits: int = 0, *, thousands: bool = False) -> str:
    """A number as text; anything else (a log can hold any JSON) escaped as it is."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:,.{digits}f}" if thousands else f"{value:.{digits}f}"
    return esc(value)


def render_html(data: dict[str, Any], *, traceback: str | None = None) -> str:
    snap = data["snapshot"]
    parts = [
        f"<style>{stylesheet()}</style>",
        f'<div class="nbf-run nbf-static" data-nbflow-run="{esc(data["run_id"])}">',
        _header_html(data),
        _steps_html(snap["progress"]),
        _wait_html(snap.get("wait"), data["run_id"]),
        _children_html(snap.get("children") or []),
        _spans_html(snap["spans"]),
        _output_html(snap["emitted_tail"]),
        _error_html(snap["error"], traceback),
        "</div>",
    ]
    return "".join(parts)


def _header_html(data: dict[str, Any]) -> str:
    usage = data["snapshot"]["usage"]
    status = data["status"]
    return (
        '<div class="nbf-head">'
        f'<span class="nbf-badge nbf-{esc(status)}">{esc(status)}</span>'
        f'<span class="nbf-name">{esc(data["workflow"])}</span>'
        f'<span class="nbf-id">run {esc(data["run_id"])} · {esc(data["mode"])}</span>'
        f'<span class="nbf-usage">{number(usage.get("total_tokens", 0))} tokens · '
        f"{number(usage.get('llm_calls', 0))} LLM calls · "
        f"${number(usage.get('cost_usd', 0.0), 4)}</span>"
        f'<span class="nbf-snap">snapshot {esc(time.strftime("%H:%M:%S"))}</span>'
        "</div>"
    )


def _steps_html(progress: dict[str, str]) -> str:
    if not progress:
        return ""
    chips = "".join(
        f'<span class="nbf-step nbf-{esc(state)}">{esc(step)}</span>'
        for step, state in progress.items()
    )
    return f'<div class="nbf-steps">{chips}</div>'


def _spans_html(spans: list[dict[str, Any]]) -> str:
    if not spans:
        return ""
    depth: dict[str | None, int] = {}
    rows = []
    for span in spans:
        level = depth.get(_id(span["parent_id"]), -1) + 1
        depth[_id(span["span_id"])] = level
        rows.append(_span_row_html(span, level))
    head = (
        "<tr><th>span</th><th>kind</th><th>status</th><th>time</th><th>tries</th>"
        "<th>tokens</th></tr>"
    )
    table = f'<table class="nbf-spans">{head}{"".join(rows)}</table>'
    return f'<div class="nbf-table-box">{table}</div>'


def _id(value: Any) -> str | None:
    return value if isinstance(value, str) else None  # a log may hold anything here


def _span_row_html(span: dict[str, Any], level: int) -> str:
    # Indented with text, not only with style: GitHub and other sanitisers drop styles.
    indent = "\u00a0\u00a0\u00a0" * (level - 1) + "└\u00a0" if level else ""
    cached = ' <span class="nbf-cached">cached</span>' if span["cached"] else ""
    tokens = number(span["tokens"], thousands=True) if span["tokens"] else ""
    error = span.get("error")
    detail = f'<div class="nbf-span-error">{esc(error)}</div>' if error else ""
    return (
        f'<tr class="nbf-{esc(span["status"])}">'
        f'<td class="nbf-span-name">{indent}{esc(span["name"])}{cached}{detail}</td>'
        f"<td>{esc(span['kind'])}</td><td>{esc(span['status'])}</td>"
        f"<td>{duration(span['duration_ms'])}</td>"
        f"<td>{number(span['attempts'])}</td><td>{tokens}</td></tr>"
    )


def duration(ms: Any) -> str:
    """A span's duration as people read it: ``340 ms``, ``1.2 s``, ``2 m 5 s``; ``…`` running."""
    if ms is None:
        return "…"
    if not isinstance(ms, int | float) or isinstance(ms, bool):
        return esc(ms)
    if ms < 1_000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1_000:.1f} s"
    minutes, seconds = divmod(round(ms / 1_000), 60)
    return f"{minutes} m {seconds} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} m"


def _output_html(tail: str) -> str:
    return f'<pre class="nbf-output">{esc(tail)}</pre>' if tail else ""


def _error_html(error: str | None, traceback: str | None) -> str:
    if not error:
        return ""
    detail = f"<pre>{esc(traceback)}</pre>" if traceback else ""
    return f'<div class="nbf-error"><b>{esc(error)}</b>{detail}</div>'


# --- waits and child runs ---------------------------------------------------------
def children_list(state: RunState, limit: int) -> list[dict[str, Any]]:
    """The run's child runs, in the order it started them: status, tokens and cost."""
    return [
        {
            "child_id": child_id,
            "workflow": child.get("workflow"),
            "status": str(child.get("status") or "running"),
            "total_tokens": _count(child.get("total_tokens")),
            "cost_usd": _amount(child.get("cost_usd")),
        }
        for child_id, child in list(state.children.items())[:limit]
    ]


def _count(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _amount(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _wait_html(wait: dict[str, Any] | None, run_id: str) -> str:
    """What the run waits for; for input, how to answer (a snapshot has no form)."""
    if not isinstance(wait, dict):
        return ""
    if wait.get("kind") != "input":
        return f'<div class="nbf-wait">waiting for {esc(describe_wait(wait))}</div>'
    name = str(wait.get("name"))
    prompt = wait.get("prompt") or f"The run waits for input {name!r}."
    return (
        f'<div class="nbf-wait"><div class="nbf-ask-prompt">{esc(prompt)}</div>'
        f'<div class="nbf-ask-meta">{esc(describe_wait(wait))}</div>'
        f'<div class="nbf-ask-how">answer with <span class="nbf-code">run.send_input('
        f'{esc(repr(name))}, value)</span> or <span class="nbf-code">nbflow send '
        f"{esc(run_id)} {esc(name)} JSON</span></div></div>"
    )


def _children_html(children: list[dict[str, Any]]) -> str:
    if not children:
        return ""
    head = "<tr><th>child run</th><th>id</th><th>status</th><th>tokens</th><th>cost</th></tr>"
    rows = "".join(_child_row_html(c) for c in children)
    return f'<div class="nbf-table-box"><table class="nbf-children">{head}{rows}</table></div>'


def _child_row_html(child: dict[str, Any]) -> str:
    tokens = number(child["total_tokens"]) if child["total_tokens"] else ""
    cost = f"${number(child['cost_usd'], 4)}" if child["cost_usd"] else ""
    return (
        f'<tr class="nbf-{esc(child["status"])}"><td>{esc(child["workflow"] or "")}</td>'
        f"<td>{esc(child['child_id'])}</td><td>{esc(child['status'])}</td>"
        f"<td>{tokens}</td><td>{cost}</td></tr>"
    )
