"""Workflows served by name to worker processes in the llm tests.

The offline model's URL and the test's Redis URL come in as inputs; side effects
that the test counts across processes go to Redis.
"""

from __future__ import annotations

import time

import redis
from openai.types.chat import ChatCompletionMessageParam

import nbflow as nf
from nbflow.llm import OpenAI, RateLimit

MODEL = "gpt-4o-mini"
_clients: dict[tuple[str, float | None, float], OpenAI] = {}


def _client(base_url: str, rpm: float | None = None, window_s: float = 60.0) -> OpenAI:
    key = (base_url, rpm, window_s)
    if key not in _clients:
        limit = RateLimit(requests_per_minute=rpm, window_s=window_s) if rpm else None
        _clients[key] = nf.openai.OpenAI(base_url=base_url, api_key="offline", rate_limit=limit)
    return _clients[key]


@nf.component
def gate(url: str, tag: str) -> int:
    # The first run through blocks here, so that the test can kill its worker.
    client = redis.Redis.from_url(url)
    passes = int(client.incr(f"gate:{tag}"))
    client.close()
    if passes == 1:
        time.sleep(60)
    return passes


@nf.workflow
def two_calls(base_url: str, url: str, tag: str, question: str) -> tuple[str | None, str]:
    client = _client(base_url)
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": question}]
    reply = client.chat.completions.create(model=MODEL, messages=messages)
    chunks = client.chat.completions.create(model=MODEL, messages=messages, stream=True)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    gate(url, tag)
    return reply.choices[0].message.content, streamed


@nf.workflow
def burst(base_url: str, calls: int, rpm: float, window_s: float) -> list[float]:
    """Calls one after another; when each one came back (wall clock, shared by processes)."""
    client = _client(base_url, rpm, window_s)
    done = []
    for i in range(calls):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": f"n{i}"}])
        done.append(time.time())
    return done
