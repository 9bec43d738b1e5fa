"""Bytes streamed for a growing structured state: nf.publish patches vs re-emitting it whole.

A deep-research-style run keeps a plan (questions, their status and findings, a summary
that grows as text) and updates it ``--updates`` times (default 200) until it is a few
KB. The same run, in one process, streams it twice: with ``nf.publish`` (patch events)
and as ``nf.emit(json.dumps(plan))`` after each update. It prints the bytes of each
stream's events as the log stores them (what SSE sends) against the final object.
The figure depends on nothing but the code: no timing involved.

    .venv/bin/python bench/state_stream.py [--updates 200]
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import nbflow as nf
from nbflow.runtime.protocol import encode_event


def research(updates: int, *, publish: bool) -> dict[str, Any]:
    plan: dict[str, Any] = {"topic": "river otters", "questions": [], "summary": ""}
    for i in range(updates):
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


def streamed_bytes(kind: str) -> int:
    run = nf.last_run()
    return sum(len(encode_event(e).encode()) for e in run.events() if e["type"] == kind)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=200, help="updates of the plan")
    args = parser.parse_args()
    patched = nf.workflow(research, name="with_publish")(args.updates, publish=True)
    patch_bytes = streamed_bytes("state.patch")
    assert nf.last_run().state("plan") == patched
    nf.workflow(research, name="with_emit")(args.updates, publish=False)
    whole_bytes = streamed_bytes("output")
    final = len(json.dumps(patched).encode())
    print(f"final object {final:,} bytes after {args.updates} updates")
    print(f"nf.publish patches: {patch_bytes:,} bytes streamed = {patch_bytes / final:.2f}x "
          "the final object (goal <= 2x)")
    print(f"re-emitting it whole: {whole_bytes:,} bytes = {whole_bytes / final:.1f}x")
    return 0 if patch_bytes <= 2 * final else 1


if __name__ == "__main__":
    sys.exit(main())
