"""Bytes streamed for a growing structured state: nf.publish patches vs re-emitting it whole.

A deep-research-style run keeps a plan (questions, their status and findings, a summary
that grows as text) and updates it ``--updates`` times (default 200) until it is a few
KB, at an agent's pace: each question's findings stream in as ten quick updates
(``--token-gap-s`` apart, as tokens arrive), then the next question waits on a model
call (``--call-gap-s``). The same run, in one process, streams the plan three ways:
with ``nf.publish`` (patches, at most one per PUBLISH_INTERVAL_S), with ``nf.publish``
sending a patch per update (the interval set to 0), and as ``nf.emit(json.dumps(plan))``
after each update. It prints the bytes of each stream's events as the log stores them
(what SSE sends) against the final object.

    .venv/bin/python bench/state_stream.py [--updates 200] [--token-gap-s 0.01] [--call-gap-s 0.3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import nbflow as nf
from nbflow import _state
from nbflow.runtime.protocol import encode_event


def research(updates: int, token_gap_s: float, call_gap_s: float, publish: bool) -> dict[str, Any]:
    plan: dict[str, Any] = {"topic": "river otters", "questions": [], "summary": ""}
    for i in range(updates):
        time.sleep(call_gap_s if i % 10 == 0 else token_gap_s)
        if i % 10 == 0:  # a new question every tenth update
            plan["questions"].append({"q": f"question {i // 10}", "status": "open", "notes": ""})
        question = plan["questions"][-1]
        question["notes"] += f"source {i}: a finding. "
        if i % 10 == 9:
            question["status"] = "done"
            plan["summary"] += f"Q{i // 10} answered. "
        if publish:
            nf.publish("plan", plan)
        else:
            nf.emit(json.dumps(plan))
    return plan


def streamed(kind: str) -> tuple[int, int]:
    """Bytes and count of the last run's events of this kind, as the log stores them."""
    events = [e for e in nf.last_run().events() if e["type"] == kind]
    return sum(len(encode_event(e).encode()) for e in events), len(events)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=200, help="updates of the plan")
    parser.add_argument("--token-gap-s", type=float, default=0.01, help="within a finding")
    parser.add_argument("--call-gap-s", type=float, default=0.3, help="between questions")
    args = parser.parse_args()
    pace = (args.updates, args.token_gap_s, args.call_gap_s)
    patched = nf.workflow(research, name="with_publish")(*pace, True)
    patch_bytes, patches = streamed("state.patch")
    assert nf.last_run().state("plan") == patched
    _state.PUBLISH_INTERVAL_S = 0.0
    nf.workflow(research, name="patch_per_update")(*pace, True)
    each_bytes, each = streamed("state.patch")
    nf.workflow(research, name="with_emit")(*pace, False)
    whole_bytes, _n = streamed("output")
    final = len(json.dumps(patched).encode())
    print(f"final object {final:,} bytes after {args.updates} updates")
    print(
        f"nf.publish: {patches} patches, {patch_bytes:,} bytes streamed = "
        f"{patch_bytes / final:.2f}x the final object (goal <= 2x)"
    )
    print(
        f"nf.publish, a patch per update: {each} patches, {each_bytes:,} bytes = "
        f"{each_bytes / final:.2f}x"
    )
    print(f"re-emitting it whole: {whole_bytes:,} bytes = {whole_bytes / final:.1f}x")
    return 0 if patch_bytes <= 2 * final else 1


if __name__ == "__main__":
    sys.exit(main())
