"""Workflows and peer tasks imported by the benchmark's worker processes.

nbflow workers load this module with ``--app bench_apps``. The peer apps
(taskiq, Celery, RQ) are built only when ``BENCH_PEER_URL`` is set, so an
nbflow worker never imports them.
"""

from __future__ import annotations

import asyncio
import os
import time

import nbflow as nf

# --- nbflow ------------------------------------------------------------------------


@nf.workflow
def noop() -> int:
    return 1


@nf.component
def tiny(i: int) -> int:
    return i + 1


@nf.workflow
def three_steps() -> int:
    return tiny(0) + tiny(1) + tiny(2)


@nf.workflow
def started_at() -> float:
    """The wall clock at its first line, for submit-to-start latency."""
    return time.time()


@nf.workflow
def ticker(n: int = 200, gap_s: float = 0.005) -> int:
    """Emits its wall clock ``n`` times, ``gap_s`` apart, for emit-to-reader latency."""
    for _ in range(n):
        nf.emit(repr(time.time()))
        time.sleep(gap_s)
    return n


@nf.workflow
def chatter(n: int = 100_000) -> int:
    """A run with ``n`` output events (plus a handful of run events)."""
    for i in range(n):
        nf.emit(i)
    return n


@nf.workflow
async def async_sleep(sleep_s: float) -> float:
    """An async run that holds its worker slot ``sleep_s`` without a thread."""
    await asyncio.sleep(sleep_s)
    return sleep_s


@nf.component
def long_sync_step(sleep_s: float) -> str:
    time.sleep(sleep_s)
    return "slept"


@nf.workflow
def long_step(sleep_s: float = 15.0) -> str:
    """A sync workflow whose one step blocks its thread for ``sleep_s``."""
    return long_sync_step(sleep_s)


@nf.workflow
async def async_blocking(sleep_s: float = 15.0) -> str:
    """An async workflow that blocks with time.sleep instead of awaiting."""
    await asyncio.sleep(0)
    time.sleep(sleep_s)
    return "slept"


# --- peers (only when BENCH_PEER_URL is set) ---------------------------------------
# One-step: a no-op job. Three-step: three jobs run one after the other, each one's
# result stored in the peer's Redis result backend. Latency: a job returning the wall
# clock at its first line.

PEER_URL = os.environ.get("BENCH_PEER_URL")

if PEER_URL:
    try:
        from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker

        taskiq_broker = RedisStreamBroker(url=PEER_URL).with_result_backend(
            RedisAsyncResultBackend(redis_url=PEER_URL)
        )

        @taskiq_broker.task
        async def taskiq_noop() -> int:
            return 1

        @taskiq_broker.task
        async def taskiq_started_at() -> float:
            return time.time()

        @taskiq_broker.task
        async def taskiq_step(i: int, next_ids: list[str]) -> int:
            """A step of a chain: starts the next step under the id the client chose for it.

            taskiq has no chains of its own. A task that awaits its subtasks instead
            deadlocks a worker once more of them are in flight than its
            --max-async-tasks (100): they hold every slot, and the subtasks wait.
            """
            if next_ids:
                await taskiq_step.kicker().with_task_id(next_ids[0]).kiq(i + 1, next_ids[1:])
            return i + 1
    except ImportError:
        pass

    try:
        from celery import Celery

        celery_app = Celery("bench_apps", broker=PEER_URL, backend=PEER_URL)
        celery_app.conf.update(
            worker_prefetch_multiplier=8,
            task_acks_late=False,
            worker_hijack_root_logger=False,
            broker_connection_retry_on_startup=True,
        )

        @celery_app.task(name="celery_noop")
        def celery_noop() -> int:
            return 1

        @celery_app.task(name="celery_started_at")
        def celery_started_at() -> float:
            return time.time()

        @celery_app.task(name="celery_step")
        def celery_step(i: int) -> int:
            return i + 1
    except ImportError:
        pass


def rq_noop() -> int:
    return 1


def rq_started_at() -> float:
    return time.time()


def rq_step(i: int) -> int:
    return i + 1


# --- waits (bench/waits.py) ----------------------------------------------------------
@nf.component
def after_wait(i: int) -> float:
    """The wall clock when the step after a wait starts."""
    return time.time()


@nf.workflow
def awaits_approval(i: int = 0) -> float:
    nf.wait_for_input("approve", schema={"type": "boolean"})
    return after_wait(i)


@nf.workflow
def leaf(i: int) -> int:
    return tiny(i)


@nf.workflow
def fan_out(n: int = 500) -> int:
    return sum(nf.gather(*[leaf.submit(i) for i in range(n)]))
