"""Workflows the viewer tests run: paced steps with progress, output and token usage."""

from __future__ import annotations

import time
from typing import Any

import nbflow as nf


@nf.component
def step(i: int, sleep_s: float) -> int:
    time.sleep(sleep_s)
    return i


@nf.workflow
def paced(n: int = 5, sleep_s: float = 0.2) -> int:
    """``n`` steps of ``sleep_s`` each, announcing each one and streaming a line per step."""
    total = 0
    for i in range(n):
        nf.progress(f"step {i}")
        total += step(i, sleep_s)
        nf.emit(f"finished step {i}\n")
    return total


@nf.workflow
def broken() -> None:
    raise ValueError("the model said no")


CHANNELS = ["blog", "newsletter", "both"]


@nf.workflow
def approval(draft: str = "the otter post", details: bool = False) -> str:
    """Write a draft, then wait for a person: publish it? (and, with ``details``, where,
    how many copies and a note: one form field of each kind)."""
    nf.progress("draft")
    nf.emit(f"draft: {draft}\n")
    nf.progress("review")
    if not nf.wait_for_input("approve", prompt=f"Publish {draft}?", schema={"type": "boolean"}):
        return "dropped"
    answers: list[object] = []
    if details:
        answers.append(nf.wait_for_input("channel", prompt="Where?", schema={"enum": CHANNELS}))
        copies = {"type": "integer", "minimum": 1, "maximum": 10}
        answers.append(nf.wait_for_input("copies", prompt="How many copies?", schema=copies))
        note = {"type": "string", "minLength": 1}
        answers.append(nf.wait_for_input("note", prompt="A note for the editor", schema=note))
    nf.progress("publish")
    return " ".join(["published", *map(str, answers)])


@nf.workflow
def fan_out(n: int = 3) -> list[int]:
    """Start ``n`` child runs of ``paced`` and gather their results in order."""
    return nf.gather(*(paced.submit(n=i + 1, sleep_s=0.01) for i in range(n)))


@nf.workflow
def planner(n: int = 4, sleep_s: float = 0.2) -> int:
    """Publish a research plan that grows: a title typed out, then ``n`` steps, each with
    a query, a status, nested sources and a long note (more than the viewer shows at once)."""
    steps: list[dict[str, Any]] = []
    plan: dict[str, Any] = {"title": "", "steps": steps, "done": False}
    for word in ["A", "research", "plan:", "river", "otters", "and", "their", "habitats"]:
        plan["title"] = f"{plan['title']} {word}".strip()
        nf.publish("plan", plan)
    for i in range(n):
        nf.progress(f"step {i}")
        step: dict[str, Any] = {"query": f"otter question {i}", "status": "searching"}
        step["sources"] = []
        steps.append(step)
        nf.publish("plan", plan)
        time.sleep(sleep_s)
        step["sources"] = [{"url": f"https://example.org/otters/{i}/{j}"} for j in range(3)]
        step["note"] = " ".join(f"finding {i}.{j} about otters and fish;" for j in range(12))
        step["status"] = "done"
        nf.publish("plan", plan)
    plan["done"] = True
    nf.publish("plan", plan)
    return n
