"""Attempts are fenced: an attempt that lost its run writes nothing and stops at once.

The reproductions of the faults that broke the log before fencing: a poison run, a
refused commit, a sync step inside async code, code that never yields, and the limits
on what one event or one run's arguments may hold.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis

import nbflow as nf
from nbflow import constants as c
from nbflow.runtime.client import Runtime

from ..conftest import ROOT, TEST_SECRET, spawn_worker, stop_workers, wait_until


def _events(r: redis.Redis, run_id: str) -> list[dict[str, Any]]:
    entries: Any = r.xrange(c.run_log(run_id))
    return [json.loads(f[b"e"]) for _id, f in entries]


def _count(run: Any, event_type: str) -> int:
    return sum(e["type"] == event_type for e in run.events(follow=False))


# --- a refused commit stops the attempt ------------------------------------------
@nf.component
def first(url: str, run_hint: str) -> int:
    client = redis.Redis.from_url(url)
    run_id = nf.current_run_id()
    assert run_id is not None
    client.hset(c.run_meta(run_id), "fence", "99/another-worker")  # a newer attempt took it
    client.incr(f"first:{run_hint}")
    client.close()
    return 1


@nf.component
def second(url: str, run_hint: str) -> int:
    client = redis.Redis.from_url(url)
    client.incr(f"second:{run_hint}")
    client.close()
    return 2


@nf.workflow
def two_steps(url: str, hint: str) -> str:
    try:
        first(url, hint)
    except Exception:  # user code cannot swallow the fence
        nf.emit("first failed")
    second(url, hint)
    return "done"


def test_an_attempt_whose_commit_is_refused_starts_no_further_step(
    runtime, worker, redis_url, r
) -> None:
    w = worker()
    run = two_steps.submit(redis_url, "fenced")
    wait_until(lambda: r.get("first:fenced") is not None, timeout_s=10)
    wait_until(lambda: run.id not in w.active, timeout_s=5)  # the attempt has unwound
    time.sleep(0.3)  # nothing more is coming
    assert r.get("second:fenced") is None
    events = _events(r, run.id)
    # Refused with its commit: no span ends, the second never starts, the emit is dropped.
    assert not [e for e in events if e["type"] in ("span.finished", "output")]
    assert "second" not in {e.get("name") for e in events}
    assert r.hget(c.run_meta(run.id), "status") == b"running"  # the other attempt's to end
    # The worker is not wedged and does not hold the lost attempt against the run.
    assert pipeline_run(runtime) == 5
    assert not w.writer.lost


@nf.component
def plus_one(x: int) -> int:
    return x + 1


@nf.workflow
def small(x: int) -> int:
    return plus_one(x) * 2 + 1


def pipeline_run(runtime: Runtime) -> int:
    return int(small.submit(1).result(timeout_s=10))


# --- sync inside async --------------------------------------------------------------
@nf.component
def sync_step(x: int, sleep_s: float = 0.02) -> int:
    time.sleep(sleep_s)
    return x + 1


@nf.workflow
async def mixed(n: int) -> int:
    total = 0
    for i in range(n):
        total += sync_step(i)  # a sync component called from async code
    return total


@nf.workflow
async def sync_forever() -> None:
    while True:
        sync_step(0)


def test_a_sync_component_inside_an_async_workflow_neither_deadlocks_nor_wedges_the_worker(
    runtime, worker
) -> None:
    worker(concurrency=4)
    runs = [mixed.submit(5) for _ in range(3)]
    assert [run.result(timeout_s=10) for run in runs] == [15, 15, 15]
    looping = sync_forever.submit()
    wait_until(
        lambda: len([e for e in looping.events(follow=False) if e["type"] == "span.finished"]) > 3,
        timeout_s=10,
    )
    started = time.monotonic()
    looping.cancel()
    with pytest.raises(nf.RunCancelled):
        looping.result(timeout_s=10)
    assert time.monotonic() - started < 8  # an async run stops at its next await
    assert mixed.submit(3).result(timeout_s=10) == 6  # the worker still serves


@nf.workflow
async def blocks_its_loop(sleep_s: float) -> int:
    return sync_step(1, sleep_s)


def test_a_worker_whose_async_loop_is_blocked_warns_in_the_log_of_the_runs_on_it(
    runtime, worker
) -> None:
    worker(loop_blocked_s=0.5)
    run = blocks_its_loop.submit(2.5)
    assert run.result(timeout_s=15) == 2
    warnings = [e for e in run.events() if e["type"] == "warning"]
    assert len(warnings) == 1
    assert "blocked" in warnings[0]["message"]
    assert "sync_step" in warnings[0]["stack"]  # the blocking frame, the user's own code
    assert run.trace().state.warnings == [warnings[0]["message"]]


# --- code that never yields -----------------------------------------------------------
def _app_worker(url: str, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    """An ``nbflow worker`` serving tests/runtime/rt_apps.py, its log in ``log``."""
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'tests' / 'runtime'}{os.pathsep}{ROOT}",
        "NBFLOW_SECRET": TEST_SECRET.decode(),
    }
    cmd = [sys.executable, "-m", "nbflow.cli", "worker", "--redis", url, "--app", "rt_apps"]
    with log.open("ab") as out:
        return subprocess.Popen([*cmd, "--lease-ms", "1000", *extra], env=env, stderr=out)


def test_cancel_of_a_run_that_never_yields_restarts_its_worker_and_bystanders_finish(
    runtime, redis_url, r, tmp_path
) -> None:
    log = tmp_path / "worker.log"
    proc = _app_worker(redis_url, log, "--stuck-grace-s", "1", "--drain-timeout", "0.2")
    try:
        stuck = runtime.start("blocking", {"url": redis_url, "tag": "stuck", "sleep_s": 120})
        bystander = runtime.start("blocking", {"url": redis_url, "tag": "by", "sleep_s": 6})
        wait_until(lambda: r.get("started:stuck") and r.get("started:by"), timeout_s=15)
        started = time.monotonic()
        stuck.cancel()
        with pytest.raises(nf.RunCancelled):
            stuck.result(timeout_s=20)
        # the grace (1 s), a watchdog tick and a heartbeat, with room for a loaded machine
        assert time.monotonic() - started < 10
        assert bystander.result(timeout_s=30) == "done"
        reasons = [e.get("reason") for e in bystander.events() if e["type"] == "run.restarted"]
        assert reasons == ["worker_draining"]
        assert proc.poll() is None  # the same process, started afresh in place
        again = runtime.start("blocking", {"url": redis_url, "tag": "again", "sleep_s": 0})
        assert again.result(timeout_s=15) == "done"
    finally:
        stop_workers([proc])
    assert "restarting this worker" in log.read_text()


def test_a_step_abandoned_by_its_time_out_that_keeps_running_restarts_its_worker(
    runtime, redis_url, r, tmp_path
) -> None:
    log = tmp_path / "worker.log"
    proc = _app_worker(redis_url, log, "--stuck-grace-s", "1")
    try:
        run = runtime.start("abandons", {"sleep_s": 120})
        assert run.result(timeout_s=15) == "timed out"
        wait_until(lambda: "abandoned by its time-out" in log.read_text(), timeout_s=10)
        assert "restarting this worker" in log.read_text()
        again = runtime.start("abandons", {"sleep_s": 0.0})
        assert again.result(timeout_s=15) == "finished"
    finally:
        stop_workers([proc])


# --- a poison run ----------------------------------------------------------------------
@pytest.mark.slow
def test_a_poison_run_fails_within_a_minute_with_defaults_and_bystanders_finish(
    runtime, redis_url, r
) -> None:
    procs: list[subprocess.Popen[bytes]] = []

    def keep_two_up() -> None:  # as a supervisor does
        while sum(p.poll() is None for p in procs) < 2:
            app_dir = ROOT / "tests" / "runtime"
            procs.append(spawn_worker(redis_url, "rt_apps", app_dir=app_dir, lease_ms=c.LEASE_MS))

    keep_two_up()
    started = time.monotonic()
    poisoned = runtime.start("poison", {"url": redis_url, "tag": "p"})
    bystanders = [
        runtime.start("steps", {"url": redis_url, "tag": f"b{i}", "n": 3, "sleep_s": 0.5})
        for i in range(3)
    ]
    try:
        while r.hget(c.run_meta(poisoned.id), "status") != b"failed":
            assert time.monotonic() - started < 60, "the poison run did not fail within 60 s"
            keep_two_up()
            time.sleep(0.2)
        meta = poisoned.meta()
        assert meta["reason"] == "worker_lost" and meta["restarts"] == c.MAX_RESTARTS + 1
        assert "crash" in meta["error"]
        assert int(r.get("crashes:p")) == c.MAX_RESTARTS + 1
        failed = [e for e in poisoned.events() if e["type"] == "run.failed"]
        assert len(failed) == 1 and failed[0]["step"] == "crash"
        for i, run in enumerate(bystanders):
            assert run.result(timeout_s=60) == 30
            assert [int(r.get(f"effects:b{i}:{k}") or 0) >= 1 for k in range(3)] == [True] * 3
    finally:
        stop_workers(procs)


# --- limits ------------------------------------------------------------------------------
@nf.workflow
def loud(size: int) -> int:
    nf.emit("x" * size)
    nf.progress("big", {"text": "d" * size})  # a string detail is cut far earlier
    return size


def test_an_event_over_the_size_limit_is_cut_with_a_marker(runtime, worker, r) -> None:
    worker(max_event_bytes=100_000)
    run = loud.submit(300_000)
    assert run.result(timeout_s=10) == 300_000
    for _id, fields in r.xrange(c.run_log(run.id)):
        assert len(fields[b"e"]) <= 100_000
    output = next(e for e in _events(r, run.id) if e["type"] == "output")
    assert output["cut"] == ["chunk"] and "over the event limit" in output["chunk"]
    progress = next(e for e in _events(r, run.id) if e["type"] == "progress")
    assert progress["cut"] == ["detail"] and progress["step"] == "big"


def test_arguments_at_the_limit_are_taken_and_one_byte_more_is_refused(
    runtime, r, monkeypatch
) -> None:
    from nbflow.runtime import codeship

    monkeypatch.setattr(c, "MAX_ARGS_BYTES", 10_000)
    bound = codeship.args_for("0" * 16)  # run ids are 16 hex digits: the header's size is fixed
    overhead = len(codeship.pack(((b"",), {}), TEST_SECRET, bound))
    # The pickle's length prefix grows with the payload: find the size that lands exactly.
    size = 10_000 - overhead
    while len(codeship.pack(((b"x" * size,), {}), TEST_SECRET, bound)) > 10_000:
        size -= 1
    assert len(codeship.pack(((b"x" * size,), {}), TEST_SECRET, bound)) == 10_000
    taken = loud.submit(b"x" * size)
    assert r.exists(c.run_meta(taken.id))
    with pytest.raises(nf.ArgumentsTooLarge, match="MAX_ARGS_BYTES"):
        loud.submit(b"x" * (size + 1))
    assert r.zcard(c.RUNS_INDEX) == 1


def test_an_argument_nested_too_deeply_is_named_in_a_clear_error(runtime, r) -> None:
    tree: list[Any] = []
    for _ in range(100_000):
        tree = [tree]
    with pytest.raises(nf.ConfigError, match="'tree' is nested too deeply"):
        loud.submit(size=1, tree=tree)
    assert r.zcard(c.RUNS_INDEX) == 0


# --- operations ---------------------------------------------------------------------------
def test_a_stopped_worker_leaves_the_consumer_group(runtime, worker, r) -> None:
    w = worker()
    assert small.submit(1).result(timeout_s=10) == 5
    names = {x["name"] for x in r.xinfo_consumers(c.WORK_STREAM, c.WORK_GROUP)}
    assert w.id.encode() in names or w.id in names
    w.stop()
    wait_until(lambda: not r.xinfo_consumers(c.WORK_STREAM, c.WORK_GROUP), timeout_s=10)
