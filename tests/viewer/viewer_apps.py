"""Workflows the viewer tests run: paced steps with progress, output and token usage."""

from __future__ import annotations

import time
from typing import Any

from openai.types.chat import ChatCompletionMessageParam

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


_tries: dict[str, int] = {}


@nf.component
def lookup(city: str) -> dict[str, Any]:
    """Fails twice for each city (a flaky API), then answers."""
    _tries[city] = _tries.get(city, 0) + 1
    if _tries[city] < 3:
        raise TimeoutError(f"the weather API timed out ({city}, try {_tries[city]})")
    return {"city": city, "temp_c": 21}


flaky_lookup = lookup.with_retry(attempts=3, initial_s=0.01, on=(TimeoutError,))


@nf.component
def slow_square(x: int) -> int:
    return x * x


cached_square = slow_square.with_cache(ttl_s=60)


@nf.workflow
def inspected(base_url: str, city: str = "Oslo") -> str:
    """One of each thing the span inspector shows: an LLM call (messages, model, tokens,
    cost), a step retried after errors, a cache miss then a hit, and progress details."""
    nf.progress("weather", f"asking about {city}")
    weather = flaky_lookup(city)
    nf.progress("squares", "2 of 2")
    cached_square(7)
    cached_square(7)
    client = nf.openai.OpenAI(base_url=base_url, api_key="offline")
    messages: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": f"Weather in {weather['city']}?"},
    ]
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    return str(reply.choices[0].message.content)
