"""The example workflow behind ``nbflow demo``: research, outline and write a short
post with LLM calls, progress steps, streamed text, a retried flaky step and a
cached one.

LLM calls go to OpenAI (or any compatible server) when ``OPENAI_API_KEY`` or
``OPENAI_BASE_URL`` is set, and to nbflow's offline model otherwise.
"""

from __future__ import annotations

import os
import random
import threading
import time
from typing import Any

from . import _workflow as wf
from ._component import component

MODEL = os.environ.get("NBFLOW_DEMO_MODEL", "gpt-4o-mini")
_client: Any = None
_client_lock = threading.Lock()


def llm() -> Any:
    """One traced client per process (a worker builds its own on first use)."""
    global _client
    with _client_lock:
        if _client is None:
            from .llm import default_client

            _client = default_client()
        return _client


def ask(prompt: str, *, max_tokens: int = 120) -> str:
    reply = llm().chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens
    )
    return str(reply.choices[0].message.content or "")


@component(cache=3600)
def research(topic: str) -> list[str]:
    text = ask(f"List three surprising findings about {topic}, one sentence each.")
    findings = [s.strip() for s in text.replace("\n", " ").split(". ") if s.strip()]
    return findings[:3] or [text]


_missed: set[str] = set()  # urls whose last call failed
_missed_lock = threading.Lock()


@component(retry={"attempts": 4, "initial_s": 0.1, "on": (ConnectionError,)})
def fetch_source(url: str) -> str:
    """A flaky fetch that shows the retry policy at work: a call fails 40% of the
    time, but never twice in a row for one url, so the demo always gets through."""
    time.sleep(0.1)
    with _missed_lock:
        if url in _missed:
            _missed.discard(url)
        elif random.random() < 0.4:
            _missed.add(url)
            raise ConnectionError(f"{url} did not answer")
    return f"contents of {url}"


@component
def outline(topic: str, notes: list[str], sections: int) -> list[str]:
    text = ask(f"Give {sections} section titles for a post on {topic}, given: {' '.join(notes)}")
    titles = [t.strip(" -*.") for t in text.replace("\n", ". ").split(". ") if t.strip(" -*.")]
    return (titles + [f"Part {i + 1}" for i in range(sections)])[:sections]


@component
def write_section(title: str, notes: list[str]) -> str:
    stream = llm().chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "user", "content": f"Write a paragraph titled {title!r} using: {notes}"}
        ],
        max_tokens=80,
        stream=True,
    )
    wf.emit(f"## {title}\n")
    parts = []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
            wf.emit(chunk.choices[0].delta.content)
    wf.emit("\n")
    return "".join(parts)


@wf.workflow
def blog_post(topic: str = "durable agents", sections: int = 3) -> str:
    """Research a topic, outline it and write a short post, streaming the text."""
    wf.progress("research")
    notes = research(topic)
    sources = [fetch_source(f"https://example.org/{topic.replace(' ', '-')}/{i}") for i in range(2)]
    wf.progress("outline", detail=f"{len(sources)} sources")
    titles = outline(topic, notes, sections)
    wf.progress("write")
    body = [write_section(t, notes) for t in titles]
    wf.progress("write", state="done")
    return "\n\n".join(body)
