"""The example workflow behind ``nbflow demo``: research, outline, write, with
progress steps, streamed text, a retried flaky step and a cached one."""

from __future__ import annotations

import random
import time

from . import _workflow as wf
from ._component import component

TOPICS = ("durable agents", "rate limits", "event logs", "notebooks")


@component(cache=3600)
def research(topic: str) -> list[str]:
    time.sleep(0.3)
    return [f"{topic}: finding {i}" for i in range(1, 4)]


@component(retry={"attempts": 4, "initial_s": 0.1, "on": (ConnectionError,)})
def fetch_source(url: str) -> str:
    time.sleep(0.1)
    if random.random() < 0.4:
        raise ConnectionError(f"{url} did not answer")
    return f"contents of {url}"


@component
def outline(topic: str, notes: list[str]) -> list[str]:
    time.sleep(0.2)
    return [f"Why {topic} matters", f"How {topic} works", "What to do next"]


@component
def write_section(title: str, notes: list[str]) -> str:
    words = f"{title}. " + " ".join(n.split(": ")[1] for n in notes) + "."
    for word in words.split():
        wf.emit(word + " ")
        time.sleep(0.02)
    wf.emit("\n")
    return words


@wf.workflow
def blog_post(topic: str = "durable agents", sections: int = 3) -> str:
    """Research a topic, outline it and write a short post, streaming the text."""
    wf.progress("research", state="running")
    notes = research(topic)
    sources = [fetch_source(f"https://example.org/{topic.replace(' ', '-')}/{i}") for i in range(2)]
    wf.progress("outline", detail=f"{len(sources)} sources")
    titles = outline(topic, notes)[:sections]
    wf.progress("write")
    body = [write_section(t, notes) for t in titles]
    wf.progress("write", state="done")
    return "\n\n".join(body)
