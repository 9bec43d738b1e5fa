"""Terminal views of runs: the live log behind ``nbflow logs --follow`` and ``nbflow demo``."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import Any, TextIO

from . import _events as ev
from ._fold import RunState

STATE_MARKS = {"pending": "·", "running": "▶", "done": "✓", "failed": "✗", "retrying": "↻"}


class LivePrinter:
    """Prints each event of a run as one readable line, folding as it goes."""

    def __init__(self, run_id: str, out: TextIO = sys.stdout) -> None:
        self.state = RunState(run_id)
        self.out = out
        self._in_output = False

    def feed(self, events: Iterable[ev.Event]) -> RunState:
        for event in events:
            self.state.apply(event)
            line = self.describe(event)
            if line is not None:
                self._write_line(line)
        self._end_output()
        return self.state

    def _write_line(self, line: str) -> None:
        if line.startswith("\x00"):  # streamed output: no newline of its own
            self.out.write(line[1:])
            self._in_output = not line.endswith("\n")
        else:
            self._end_output()
            self.out.write(line + "\n")
        self.out.flush()

    def _end_output(self) -> None:
        if self._in_output:
            self.out.write("\n")
            self._in_output = False

    def describe(self, e: ev.Event) -> str | None:
        kind = e.get("type")
        stamp = time.strftime("%H:%M:%S", time.localtime(e.get("ts", 0)))
        if kind == ev.OUTPUT:
            return "\x00" + str(e.get("chunk", ""))
        if kind == ev.PROGRESS:
            mark = STATE_MARKS.get(e.get("state", ""), "?")
            detail = f" ({e['detail']})" if e.get("detail") else ""
            return f"{stamp}  {mark} {e['step']}{detail}"
        if kind == ev.SPAN_FINISHED:
            return f"{stamp}    {self._span_line(e)}"
        if kind == ev.SPAN_RETRY:
            span = self.state.spans.get(e.get("span_id", ""))
            name = span.name if span else "?"
            return (
                f"{stamp}    ↻ {name} attempt {e.get('attempt')} failed: {e.get('error')} "
                f"(retry in {e.get('delay_s')} s)"
            )
        if kind in (
            ev.RUN_QUEUED,
            ev.RUN_STARTED,
            ev.RUN_RESTARTED,
            ev.RUN_CANCEL_REQUESTED,
            ev.LOG_TRUNCATED,
        ):
            extra = e.get("reason") or e.get("worker") or ""
            return f"{stamp}  {kind} {extra}".rstrip()
        if kind in ev.TERMINAL_EVENTS:
            return f"{stamp}  {kind} {e.get('error') or e.get('result_error') or ''}".rstrip()
        return None

    def _span_line(self, e: ev.Event) -> str:
        span = self.state.spans.get(e.get("span_id", ""))
        if span is None:
            return "span finished"
        parts = [f"{'  ' * span.depth}{span.name}", span.status]
        if span.duration_ms is not None:
            parts.append(f"{span.duration_ms:.0f} ms")
        return " · ".join(parts + span.marks())


def summary(state: RunState) -> str:
    usage = state.usage()
    took = ""
    if state.started_at and state.ended_at:
        took = f" in {state.ended_at - state.started_at:.2f} s"
    lines = [f"run {state.run_id} {state.status}{took}"]
    if usage["llm_calls"]:
        lines.append(
            f"tokens: {usage['input_tokens']} in, {usage['output_tokens']} out "
            f"({usage['llm_calls']} LLM calls, ~${usage['cost_usd']:.4f})"
        )
    return "\n".join(lines)


def print_runs(rows: list[dict[str, Any]], out: TextIO = sys.stdout) -> None:
    if not rows:
        out.write("no runs yet (`nbflow demo` starts one)\n")
        return
    header = (
        f"{'run':<17} {'workflow':<20} {'status':<10} {'started':<19} {'took':>8} "
        f"{'tokens':>8}  notebook"
    )
    out.write(header + "\n")
    for row in rows:
        started = row.get("started_at") or row.get("created_at")
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if started else ""
        took = f"{row['duration_s']:.1f}s" if row.get("duration_s") is not None else ""
        out.write(
            f"{row['run_id']:<17} {str(row.get('workflow') or '')[:20]:<20} "
            f"{row.get('status') or '':<10} "
            f"{when:<19} {took:>8} {row.get('total_tokens') or 0:>8}  {row.get('notebook') or ''}\n"
        )
