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
        async def taskiq_step(i: int) -> int:
            return i + 1

        @taskiq_broker.task
        async def taskiq_three() -> int:
            # three recorded steps: each a task of its own, awaited in turn
            total = 0
            for i in range(3):
                handle = await taskiq_step.kiq(i)
                total += (await handle.wait_result(check_interval=0.001)).return_value
            return total
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
    except ImportError:
        pass


def rq_noop() -> int:
    return 1
