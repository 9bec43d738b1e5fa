"""Terminal views of runs: the live log behind ``nbflow logs --follow`` and ``nbflow demo``."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable
from typing import Any, TextIO

from . import _events as ev
from ._fold import RunState
from ._waitinfo import describe_wait

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
        waits = self._wait_line(e)
        if waits is not None:
            return f"{stamp}  {waits}"
        if kind in ev.TERMINAL_EVENTS:
            return f"{stamp}  {kind} {e.get('error') or e.get('result_error') or ''}".rstrip()
        return None

    def _wait_line(self, e: ev.Event) -> str | None:
        """Waits, answers, child runs and warnings, as one line each."""
        kind = e.get("type")
        if kind == ev.RUN_WAITING:
            return f"⏸ waiting for {describe_wait(e.get('wait'))}{answer_hint(self.state)}"
        if kind == ev.RUN_RESUMED:
            return f"▶ resumed ({e.get('by')})"
        if kind == ev.INPUT_RECEIVED:
            return f"← input {e.get('name')!r}: {json.dumps(e.get('value'), default=str)}"
        if kind == ev.CHILD_STARTED:
            return f"  ⑂ child run {e.get('child_id')} ({e.get('workflow')}) started"
        if kind == ev.CHILD_ENDED:
            child = self.state.children.get(e.get("child_id", ""), {})
            return (
                f"  ⑂ child run {e.get('child_id')} ({child.get('workflow')}) {child_marks(child)}"
            )
        if kind == ev.WARNING:
            return f"⚠ {e.get('message')}"
        return None

    def _span_line(self, e: ev.Event) -> str:
        span = self.state.spans.get(e.get("span_id", ""))
        if span is None:
            return "span finished"
        parts = [f"{'  ' * span.depth}{span.name}", span.status]
        if span.duration_ms is not None:
            parts.append(f"{span.duration_ms:.0f} ms")
        return " · ".join(parts + span.marks())


def answer_hint(state: RunState) -> str:
    """How to answer a run waiting for input, from a shell."""
    wait = state.wait or {}
    if wait.get("kind") != "input":
        return ""
    return f"; answer with: nbflow send {state.run_id} {wait.get('name')} JSON"


def child_marks(child: dict[str, Any]) -> str:
    marks = [str(child.get("status") or "running")]
    if child.get("total_tokens"):
        marks.append(f"{child['total_tokens']} tokens")
    if child.get("cost_usd"):
        marks.append(f"${float(child['cost_usd']):.4f}")
    return " · ".join(marks)


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
    if state.status == "waiting":
        lines.append(f"waiting for {describe_wait(state.wait)}{answer_hint(state)}")
    if state.children:
        ended = sum(1 for c in state.children.values() if c.get("status") != "running")
        lines.append(f"child runs: {len(state.children)} ({ended} ended)")
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
        if row.get("waiting_for"):
            out.write(f"{'':<17} ↳ waits for {row['waiting_for']}\n")
