"""The contenders of the peer benchmarks: nbflow, taskiq, Celery and RQ.

Each ``System`` starts its worker processes against a server, opens its client
side, submits jobs and waits on them. ``throughput.py`` submits many jobs of a
kind at once (``submit``, ``wait``); ``latency.py`` submits one job at a time
that returns the wall clock at its first line (``start_latency``).

Peers: taskiq (RedisStreamBroker + result backend, log level WARNING), Celery
(redis broker and backend, solo pool), RQ (SimpleWorker). Their apps are built
by ``load_apps`` against the server's URL; the jobs live in ``bench_apps.py``.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import _common as cm
import redis

# The figures of ``System.start_latency``, in ms.
CODE_STARTS = "submit -> job code starts"
QUEUED_TO_STARTED = "queued -> started (run.queued ts -> run.started ts)"
STARTED_SEEN = "submit -> run.started read by client"


def ms(seconds: float) -> float:
    return seconds * 1000


class System:
    """A contender: starts its workers, submits jobs of a kind, waits until they end."""

    name = ""
    module = ""  # the package it needs
    submit_call = ""  # how it submits one job, for the submissions rows
    settle_s = 0.0  # pause after the warm-up job, for the other workers' start-up

    def __init__(self, apps: ModuleType) -> None:
        self.apps = apps

    def unit(self, kind: str) -> str:
        return "jobs/s" if kind == "one-step" else "chains/s"

    def start_workers(self, bench: cm.Bench, n: int) -> list[subprocess.Popen[bytes]]:
        raise NotImplementedError

    def open(self, url: str) -> None:
        """Connect the client side."""

    def close(self) -> None:
        """Disconnect the client side."""

    def submit(self, kind: str, n: int) -> list[Any]:
        """Submit ``n`` jobs of ``kind`` back to back; a handle on each."""
        raise NotImplementedError

    def wait(self, handles: list[Any], timeout_s: float) -> None:
        """Block until every job is terminal; raise if one failed or time ran out."""
        raise NotImplementedError

    def note(self, handles: list[Any]) -> str:
        """Something to print about the finished jobs."""
        return ""

    def start_latency(self, timeout_s: float) -> dict[str, float]:
        """Submit one job that returns ``time.time()`` at its first line and wait for it.

        Returns ``{CODE_STARTS: ms}``: from just before the submit call to the job's
        clock (same machine, same clock), and any other figure the system has.
        """
        raise NotImplementedError


BY_VALUE = "one-step, by value"  # nbflow only: a workflow the benchmark script defines


class Nbflow(System):
    """nbflow. ``by_value``: the workflow of the BY_VALUE kind, defined in the script that
    runs the benchmark, so that it travels by value as a notebook's workflow does."""

    name = "nbflow"
    module = "nbflow"
    submit_call = "submit"
    workflows = {"one-step": "noop", "three-step": "three_steps"}

    def __init__(self, apps: ModuleType, by_value: Any = None) -> None:
        super().__init__(apps)
        self.by_value = by_value

    def unit(self, kind: str) -> str:
        return "runs/s"

    def start_workers(self, bench: cm.Bench, n: int) -> list[subprocess.Popen[bytes]]:
        return bench.nbflow_workers(n)  # returns once all n have registered

    def open(self, url: str) -> None:
        from nbflow.runtime.client import Runtime

        self.rt = Runtime(url, secret=cm.SECRET.encode())

    def close(self) -> None:
        self.rt.close()

    def submit(self, kind: str, n: int) -> list[Any]:
        wf = self.by_value if kind == BY_VALUE else getattr(self.apps, self.workflows[kind])
        return [self.rt.submit(wf, (), {}) for _ in range(n)]

    def wait(self, handles: list[Any], timeout_s: float) -> None:
        import nbflow as nf

        for run, status in zip(handles, nf.wait(handles, timeout_s=timeout_s), strict=True):
            if status != "succeeded":
                raise RuntimeError(f"{run.id} ended {status}")

    def note(self, handles: list[Any]) -> str:
        sample = handles[:5]
        events = sum(self.rt.redis.xlen(f"nbflow:{{{run.id}}}:log") for run in sample)
        return f"~{events / len(sample):.0f} events kept per run"

    def start_latency(self, timeout_s: float) -> dict[str, float]:
        """The run's log followed live, as a client would; its start events timed too."""
        t0 = time.time()
        run = self.rt.submit(self.apps.started_at, (), {})
        queued_ts, started_ts, seen = self._follow_start(run)
        started = run.result(timeout_s)
        return {
            CODE_STARTS: ms(started - t0),
            QUEUED_TO_STARTED: ms(started_ts - queued_ts),
            STARTED_SEEN: ms(seen - t0),
        }

    @staticmethod
    def _follow_start(run: Any) -> tuple[float, float, float]:
        """run.queued's and run.started's timestamps, and when run.started was read."""
        stamps: dict[str, float] = {}
        seen = float("nan")
        for event in run.events(block_ms=1000):
            kind = event["type"]
            if kind in ("run.queued", "run.started") and kind not in stamps:
                stamps[kind] = event["ts"]
                if kind == "run.started":
                    seen = time.time()
        nan = float("nan")
        return stamps.get("run.queued", nan), stamps.get("run.started", nan), seen


class Peer(System):
    settle_s = 2.0  # a peer's workers cannot be asked whether they are up

    def start_workers(self, bench: cm.Bench, n: int) -> list[subprocess.Popen[bytes]]:
        return [
            bench.spawn(self.worker_argv(bench.url, i), BENCH_PEER_URL=bench.url) for i in range(n)
        ]

    def worker_argv(self, url: str, index: int) -> list[str]:
        raise NotImplementedError


class Taskiq(Peer):
    name = "taskiq"
    module = "taskiq_redis"
    submit_call = "kiq"

    def worker_argv(self, url: str, index: int) -> list[str]:
        args = "-m taskiq worker bench_apps:taskiq_broker --workers 1 --log-level WARNING"
        return [sys.executable, *args.split()]

    def open(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self.apps.taskiq_broker.startup())

    def close(self) -> None:
        self.loop.run_until_complete(self.apps.taskiq_broker.shutdown())
        self.loop.close()

    def submit(self, kind: str, n: int) -> list[Any]:
        return self.loop.run_until_complete(self._submit(kind, n))

    async def _submit(self, kind: str, n: int) -> list[Any]:
        if kind == "one-step":
            return [await self.apps.taskiq_noop.kiq() for _ in range(n)]
        return [await self._chain() for _ in range(n)]

    async def _chain(self) -> Any:
        from taskiq import AsyncTaskiqTask

        ids = [uuid.uuid4().hex for _ in range(3)]
        await self.apps.taskiq_step.kicker().with_task_id(ids[0]).kiq(0, ids[1:])
        return AsyncTaskiqTask(ids[-1], self.apps.taskiq_broker.result_backend)

    def wait(self, handles: list[Any], timeout_s: float) -> None:
        self.loop.run_until_complete(self._wait(handles, timeout_s))

    async def _wait(self, handles: list[Any], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for handle in handles:
            await self._value(handle, max(0.1, deadline - time.monotonic()))

    async def _value(self, handle: Any, timeout_s: float) -> Any:
        result = await handle.wait_result(timeout=timeout_s, check_interval=0.001)
        if result.is_err:
            raise RuntimeError(result.error)
        return result.return_value

    def start_latency(self, timeout_s: float) -> dict[str, float]:
        return self.loop.run_until_complete(self._start_latency(timeout_s))

    async def _start_latency(self, timeout_s: float) -> dict[str, float]:
        t0 = time.time()  # inside the loop: kiq is awaited, as an async client would
        task = await self.apps.taskiq_started_at.kiq()
        started = await self._value(task, timeout_s)
        return {CODE_STARTS: ms(started - t0)}


class Celery(Peer):
    name = "celery"
    module = "celery"
    submit_call = "delay"

    def worker_argv(self, url: str, index: int) -> list[str]:
        args = (
            "-m celery -A bench_apps:celery_app worker -P solo -c 1 -l warning"
            " --without-gossip --without-mingle --without-heartbeat"
        )
        return [sys.executable, *args.split(), "-n", f"w{index}@%h"]

    def submit(self, kind: str, n: int) -> list[Any]:
        if kind == "one-step":
            return [self.apps.celery_noop.delay() for _ in range(n)]
        step = self.apps.celery_step
        return [(step.s(0) | step.s() | step.s()).delay() for _ in range(n)]

    def wait(self, handles: list[Any], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for result in handles:
            result.get(timeout=max(0.1, deadline - time.monotonic()), interval=0.001)

    def start_latency(self, timeout_s: float) -> dict[str, float]:
        t0 = time.time()
        result = self.apps.celery_started_at.delay()
        started = result.get(timeout=timeout_s, interval=0.001)
        return {CODE_STARTS: ms(started - t0)}


class Rq(Peer):
    name = "rq"
    module = "rq"
    submit_call = "enqueue"

    def worker_argv(self, url: str, index: int) -> list[str]:
        args = "-m rq.cli worker -q -w rq.worker.SimpleWorker"
        return [sys.executable, *args.split(), "-u", url]

    def open(self, url: str) -> None:
        from rq import Queue

        self.conn = redis.Redis.from_url(url)
        self.queue = Queue(connection=self.conn)

    def close(self) -> None:
        self.conn.close()

    def submit(self, kind: str, n: int) -> list[Any]:
        if kind == "one-step":
            return [self.queue.enqueue(self.apps.rq_noop) for _ in range(n)]
        return [self._chain() for _ in range(n)]

    def _chain(self) -> Any:
        job = None
        for i in range(3):
            job = self.queue.enqueue(self.apps.rq_step, i, depends_on=job)
        return job

    def wait(self, handles: list[Any], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for job in handles:
            self._wait_one(job, deadline, timeout_s)

    def _wait_one(self, job: Any, deadline: float, timeout_s: float) -> None:
        while (status := job.get_status(refresh=True)) != "finished":
            if status == "failed":
                raise RuntimeError(f"rq job failed: {job.exc_info}")
            if time.monotonic() > deadline:
                ready = self.queue.ready_job_registry.count
                raise TimeoutError(
                    f"a job still {status.value} after {timeout_s:.0f} s,"
                    f" {ready} ready dependents not enqueued"
                )
            time.sleep(0.001)

    def start_latency(self, timeout_s: float) -> dict[str, float]:
        t0 = time.time()
        job = self.queue.enqueue(self.apps.rq_started_at)
        self._wait_one(job, time.monotonic() + timeout_s, timeout_s)
        return {CODE_STARTS: ms(job.return_value() - t0)}


# --- setting up ----------------------------------------------------------------------


@contextmanager
def running(bench: cm.Bench, system: System, workers: int) -> Iterator[System]:
    """The server flushed, ``workers`` worker processes started and the client opened;
    all of it closed and stopped on exit."""
    bench.flush()
    procs = system.start_workers(bench, workers)
    try:
        system.open(bench.url)
        try:
            yield system
        finally:
            system.close()
    finally:
        for proc in procs:
            bench.stop(proc)


def available_peers(apps: ModuleType, skipped: Callable[[str], None]) -> list[System]:
    """The peers whose package is installed; ``skipped`` is told about the others."""
    peers: list[System] = []
    for peer in (Taskiq(apps), Celery(apps), Rq(apps)):
        try:
            importlib.import_module(peer.module)
        except ImportError as error:
            skipped(f"{peer.name}: skipped: {error}")
            continue
        peers.append(peer)
    return peers


def load_apps(url: str) -> ModuleType:
    """bench_apps with its peer apps built against ``url`` (in this process only)."""
    os.environ["BENCH_PEER_URL"] = url
    try:
        import bench_apps
    finally:
        os.environ.pop("BENCH_PEER_URL")  # nbflow workers inherit this environment
    return bench_apps
