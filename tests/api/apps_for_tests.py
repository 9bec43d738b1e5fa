"""Workflows the API tests serve by name (``--app tests.api.apps_for_tests``).

Workers run in the test process (on threads), so a run can wait on a gate that
the test opens: the test decides what happens while a stream is cut.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Literal

import nbflow as nf

_gates: dict[str, threading.Event] = {}
_gates_lock = threading.Lock()


def gate(name: str) -> threading.Event:
    with _gates_lock:
        return _gates.setdefault(name, threading.Event())


@nf.workflow
def greet(name: str, times: int = 1) -> str:
    """Say hello, streaming one line per greeting."""
    nf.progress("greeting")
    for i in range(times):
        nf.emit(f"hello {name} #{i}")
    nf.progress("done", state="done")
    return f"hello {name}"


@nf.workflow
def staged(key: str, stages: int = 2, per_stage: int = 3) -> int:
    """Emit ``per_stage`` chunks a stage; before the next, wait for the test to open a gate."""
    for stage in range(stages):
        if stage and not gate(f"{key}/{stage - 1}").wait(30):
            raise TimeoutError(f"gate {key}/{stage - 1} never opened")
        for i in range(per_stage):
            nf.emit(f"{stage}.{i}")
    return stages * per_stage


@nf.component
def tick(i: int, delay_s: float) -> int:
    time.sleep(delay_s)
    return i


@nf.workflow
def ticker(n: int = 100, delay_s: float = 0.05) -> int:
    """Call a component ``n`` times: a run that stops at the next one when cancelled."""
    return sum(tick(i, delay_s) for i in range(n))


@nf.workflow
def fail(message: str) -> None:
    raise ValueError(message)


class Opaque:
    def __repr__(self) -> str:
        return "<Opaque thing>"


@nf.workflow
def opaque() -> Opaque:
    return Opaque()


@nf.workflow
def typed(
    n: int, ratio: float, tags: list[str], mode: Literal["fast", "slow"] = "fast"
) -> dict[str, Any]:
    return {"n": n, "ratio": ratio, "tags": tags, "mode": mode}


@nf.workflow
def anything(**given: Any) -> dict[str, Any]:
    """Takes any input object: the fuzzer's cases run (tests/api/test_openapi.py)."""
    return given


@nf.workflow
def untyped(a, b=2):
    return [a, b]


@nf.workflow
async def shout(text: str) -> str:
    nf.emit(text.upper())
    return text.upper()


COPIES = {
    "type": "object",
    "properties": {"n": {"type": "integer", "minimum": 1}},
    "required": ["n"],
}


@nf.workflow
def review(draft: str) -> str:
    """Ask a person whether to publish ``draft``, then how many copies."""
    if not nf.wait_for_input("approve", prompt=f"Publish {draft}?", schema={"type": "boolean"}):
        return "dropped"
    copies = nf.wait_for_input("copies", prompt="How many copies?", schema=COPIES)
    return f"published {copies['n']}"


@nf.workflow
def planner(steps: int = 3) -> dict[str, Any]:
    """Publish a plan as it grows."""
    plan: dict[str, Any] = {"steps": [], "notes": ""}
    for i in range(steps):
        plan["steps"].append(f"step {i}")
        plan["notes"] += f"note {i}. "
        nf.publish("plan", plan)
    return plan
