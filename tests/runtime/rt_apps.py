"""Workflows served by name to worker processes in the runtime tests.

Side effects go to Redis (INCR per step) so tests can count executions across
processes; the URL comes from the input.
"""

from __future__ import annotations

import os
import time

import redis

import nbflow as nf


def _count(url: str, key: str) -> None:
    client = redis.Redis.from_url(url)
    client.incr(key)
    client.close()


@nf.component(
    retry={"attempts": 30, "initial_s": 0.1, "max_s": 0.5, "on": (redis.ConnectionError,)}
)
def slow_step(url: str, tag: str, i: int, sleep_s: float) -> int:
    time.sleep(sleep_s)
    _count(url, f"effects:{tag}:{i}")  # the side effect happens as the step finishes
    return i * 10


@nf.workflow
def steps(url: str, tag: str, n: int = 5, sleep_s: float = 0.3) -> int:
    total = 0
    for i in range(n):
        nf.progress(f"step {i}")
        total += slow_step(url, tag, i, sleep_s)
    return total


@nf.workflow
def blocking(url: str, tag: str, sleep_s: float = 5.0) -> str:
    # One long step that never reaches a component boundary while it sleeps.
    _count(url, f"started:{tag}")
    time.sleep(sleep_s)
    _count(url, f"finished:{tag}")
    return "done"


@nf.component
def crash(url: str, tag: str) -> None:
    _count(url, f"crashes:{tag}")
    os._exit(1)  # a poison step: takes its worker down every time


@nf.workflow
def poison(url: str, tag: str) -> None:
    crash(url, tag)


@nf.component(timeout_s=0.2)
def overrun(sleep_s: float) -> None:
    time.sleep(sleep_s)  # abandoned by its time-out; the thread keeps going


@nf.workflow
def abandons(sleep_s: float = 60.0) -> str:
    try:
        overrun(sleep_s)
    except nf.StepTimeout:
        return "timed out"
    return "finished"


@nf.workflow
def approval(url: str, tag: str) -> str:
    slow_step(url, tag, 0, 0.0)
    approved = nf.wait_for_input("approve", prompt="Publish?", schema={"type": "boolean"})
    slow_step(url, tag, 1, 0.0)
    return "published" if approved else "dropped"


@nf.workflow
def leaf(url: str, tag: str, i: int, sleep_s: float) -> int:
    return slow_step(url, tag, i, sleep_s)


@nf.workflow
def fan_parent(url: str, tag: str, n: int, sleep_s: float) -> list[int]:
    return nf.gather(*[leaf.submit(url, tag, i, sleep_s) for i in range(n)])
