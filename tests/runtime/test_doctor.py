"""nbflow doctor finds runs that nothing would move on, and --repair hands them back."""

from __future__ import annotations

import os
import subprocess
import sys

import redis

import nbflow as nf
from nbflow import constants as c

from ..conftest import TEST_SECRET, wait_until


@nf.component
def inc(x: int) -> int:
    return x + 1


@nf.workflow
def bump(x: int) -> int:
    return inc(x)


def _doctor(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NBFLOW_SECRET": TEST_SECRET.decode()}
    cmd = [sys.executable, "-m", "nbflow.cli", "doctor", "--redis", redis_url, *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)


def _strand(r: redis.Redis) -> dict[str, str]:
    """Runs in each broken state doctor looks for, with no worker up."""
    lost_message = bump.submit(1).id
    r.delete(c.WORK_STREAM)  # the queued run's work message is gone
    r.xgroup_create(c.WORK_STREAM, c.WORK_GROUP, id="0", mkstream=True)
    out_of_index = bump.submit(2).id
    r.delete(c.WORK_STREAM)
    r.xgroup_create(c.WORK_STREAM, c.WORK_GROUP, id="0", mkstream=True)
    r.hset(c.run_meta(out_of_index), mapping={"status": "running", "attempts": "1"})
    ended = bump.submit(3).id
    r.delete(c.WORK_STREAM)
    r.xgroup_create(c.WORK_STREAM, c.WORK_GROUP, id="0", mkstream=True)
    r.hset(c.run_meta(ended), "status", "succeeded")  # ended, but its keys never expire
    r.zadd(c.LEASES, {ended: 0})  # and still in the lease index
    return {"queued": lost_message, "running": out_of_index, "ended": ended}


def test_doctor_reports_each_broken_state_and_repair_lets_workers_finish_them(
    runtime, worker, redis_url, r
) -> None:
    runs = _strand(r)
    found = _doctor(redis_url)
    assert found.returncode == 1, found.stderr
    lines = found.stdout.splitlines()
    assert any(runs["queued"] in line and "no work message" in line for line in lines)
    assert any(runs["running"] in line and "not in the lease index" in line for line in lines)
    assert any(runs["ended"] in line and "stale_lease" in line for line in lines)
    assert any(f"{{{runs['ended']}}}:meta" in line and "no_ttl" in line for line in lines)
    assert "run `nbflow doctor --repair`" in lines[-1]

    repaired = _doctor(redis_url, "--repair")
    assert repaired.returncode == 0, repaired.stderr
    assert "repaired" in repaired.stdout
    clean = _doctor(redis_url)
    assert clean.returncode == 0 and "nothing wrong" in clean.stdout
    assert r.ttl(c.run_meta(runs["ended"])) > 0

    worker()
    assert runtime.attach(runs["queued"]).result(timeout_s=15) == 2
    assert runtime.attach(runs["running"]).result(timeout_s=15) == 3
    restarted = [
        e for e in runtime.attach(runs["running"]).events() if e["type"] == "run.restarted"
    ]
    assert restarted and restarted[0]["reason"] == "worker_lost"


def test_doctor_finds_nothing_on_a_server_where_runs_have_run(runtime, worker, redis_url) -> None:
    worker()
    assert [bump.submit(i).result(timeout_s=10) for i in range(3)] == [1, 2, 3]
    wait_until(lambda: _doctor(redis_url).returncode == 0, timeout_s=10)


@nf.workflow
def dozes() -> str:
    nf.sleep(0.2)
    return "awake"


def test_doctor_finds_a_waiting_run_that_nothing_would_wake_and_repair_wakes_it(
    runtime, worker, redis_url, r
) -> None:
    w = worker()
    run = dozes.submit()
    wait_until(lambda: run.status() == "waiting", timeout_s=10)
    w.stop()
    wait_until(lambda: not w.active and w.loop.is_closed(), timeout_s=10)
    r.zrem(c.WAKEUPS, run.id)  # its timer is lost
    found = _doctor(redis_url)
    assert found.returncode == 1 and "no wake-up" in found.stdout
    assert _doctor(redis_url, "--repair").returncode == 0
    worker()
    assert run.result(timeout_s=10) == "awake"
