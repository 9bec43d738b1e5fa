"""Durable waits: input from people, timers and child runs, without holding a worker."""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest
import redis

import nbflow as nf
from nbflow import constants as c

from ..conftest import wait_until


def _count(url: str, key: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return int(client.incr(key))
    finally:
        client.close()


@nf.component
def effect(url: str, key: str) -> int:
    return _count(url, key)


@nf.workflow
def publish(url: str, tag: str) -> str:
    effect(url, f"{tag}:before")
    nf.emit("asking;")
    approved = nf.wait_for_input(
        "approve", prompt="Publish this draft?", schema={"type": "boolean"}
    )
    effect(url, f"{tag}:after")
    nf.emit("answered;")
    return "published" if approved else "dropped"


def _waiting(run: Any) -> bool:
    return run.status() == "waiting"


def test_a_run_waits_for_input_without_a_worker_and_resumes_exactly_where_it_stopped(
    runtime, worker, redis_url, r
) -> None:
    w = worker(concurrency=1)
    run = publish.submit(redis_url, "ok")
    wait_until(lambda: _waiting(run), timeout_s=10)
    assert not w.active  # the slot is free while the run waits
    assert small_run() == 3  # so another run gets it
    wait = run.trace().state.wait
    assert wait["name"] == "approve" and wait["prompt"] == "Publish this draft?"
    run.send_input("approve", True)
    assert run.result(timeout_s=10) == "published"
    assert r.get("ok:before") == b"1" and r.get("ok:after") == b"1"  # nothing ran twice
    assert run.trace().emitted == "asking;answered;"  # nor was anything said twice
    types = [e["type"] for e in run.events()]
    assert types.count("run.waiting") == 1 and types.count("input.received") == 1
    assert run.trace().state.inputs == {"approve": True}


@nf.component
def add_one(x: int) -> int:
    return x + 1


@nf.workflow
def tiny(x: int) -> int:
    return add_one(x)


def small_run() -> int:
    return int(tiny.submit(2).result(timeout_s=10))


def test_a_bad_value_is_refused_naming_the_field_and_a_second_answer_is_refused(
    runtime, worker, redis_url
) -> None:
    worker()
    run = publish.submit(redis_url, "bad")
    wait_until(lambda: _waiting(run), timeout_s=10)
    with pytest.raises(nf.InputRejected, match=r"'approve'.*not of type 'boolean'"):
        run.send_input("approve", "yes")
    with pytest.raises(nf.InputRejected, match="waits for input 'approve', not 'other'"):
        run.send_input("other", True)
    assert run.status() == "waiting"  # nothing was recorded
    run.send_input("approve", False)
    with pytest.raises(nf.InputRejected, match="'approve' was answered already"):
        run.send_input("approve", True)
    assert run.result(timeout_s=10) == "dropped"
    with pytest.raises(nf.InputRejected, match="'approve' was answered already"):
        run.send_input("approve", True)
    with pytest.raises(nf.InputRejected, match=r"not waiting for input \(it is succeeded\)"):
        run.send_input("never-asked", True)


@nf.workflow
def impatient(timeout_s: float) -> str:
    try:
        nf.wait_for_input("approve", timeout_s=timeout_s)
    except nf.InputTimeout as error:
        return f"timed out: {error}"
    return "answered"


def test_an_input_timeout_raises_at_the_wait_and_the_workflow_can_catch_it(runtime, worker) -> None:
    worker()
    started = time.monotonic()
    run = impatient.submit(0.5)
    assert run.result(timeout_s=10) == "timed out: no input 'approve' within 0.5 s"
    assert 0.5 <= time.monotonic() - started < 5


@nf.workflow
def napper(url: str, tag: str, nap_s: float) -> str:
    effect(url, f"{tag}:before")
    nf.sleep(nap_s)
    effect(url, f"{tag}:after")
    return "rested"


def test_a_durable_sleep_frees_the_worker_and_fires_once(runtime, worker, redis_url, r) -> None:
    w = worker(concurrency=1)
    started = time.monotonic()
    run = napper.submit(redis_url, "nap", 1.0)
    wait_until(lambda: _waiting(run), timeout_s=10)
    assert not w.active
    assert run.result(timeout_s=10) == "rested"
    assert 1.0 <= time.monotonic() - started < 6
    assert [r.get("nap:before"), r.get("nap:after")] == [b"1", b"1"]
    assert [e["by"] for e in run.events() if e["type"] == "run.resumed"] == ["timer"]


def test_a_timer_due_while_no_worker_is_up_fires_once_when_one_starts(
    runtime, worker, redis_url, r
) -> None:
    first = worker()
    run = napper.submit(redis_url, "late", 0.5)
    wait_until(lambda: _waiting(run), timeout_s=10)
    first.stop()
    time.sleep(1.0)  # due, and no worker up
    assert run.status() == "waiting"
    worker()
    worker()  # two sweepers, one wake-up
    assert run.result(timeout_s=10) == "rested"
    assert [e["type"] for e in run.events()].count("run.resumed") == 1
    assert r.get("late:after") == b"1"


@nf.workflow
def research(topic: str, fail: bool = False) -> str:
    if fail:
        raise ValueError(f"no sources on {topic}")
    return add_one_text(topic)


@nf.component
def add_one_text(topic: str) -> str:
    return f"notes on {topic}"


@nf.workflow
def fan_out(topics: list[str]) -> list[str]:
    children = [research.submit(t) for t in topics]
    return nf.gather(*children)


def test_child_runs_are_linked_and_gathered_in_order_while_the_parent_holds_no_worker(
    runtime, worker
) -> None:
    worker(concurrency=2)
    parent = fan_out.submit(["a", "b", "c", "d", "e"])
    assert parent.result(timeout_s=20) == [f"notes on {t}" for t in "abcde"]
    children = parent.children()
    assert len(children) == 5
    assert all(child.meta()["parent_id"] == parent.id for child in children)
    state = parent.trace().state
    assert set(state.children) == {child.id for child in children}
    assert {v["status"] for v in state.children.values()} == {"succeeded"}


@nf.workflow
def careful_parent() -> str:
    child = research.submit("x", fail=True)
    try:
        return str(child.result())
    except nf.RunFailed as error:
        return f"child failed: {error.error_type}"


def test_a_failed_child_raises_run_failed_in_the_parent_at_the_wait(runtime, worker) -> None:
    worker()
    assert careful_parent.submit().result(timeout_s=15) == "child failed: ValueError"


@nf.workflow
def waits_forever(tag: str) -> None:
    nf.wait_for_input(f"never-{tag}")


@nf.workflow
def parent_of_waiters() -> list[Any]:
    return nf.gather(waits_forever.submit("a"), waits_forever.submit("b"))


def test_cancelling_a_parent_cancels_its_children(runtime, worker) -> None:
    worker()
    parent = parent_of_waiters.submit()
    wait_until(lambda: _waiting(parent) and len(parent.children()) == 2, timeout_s=10)
    children = parent.children()
    wait_until(lambda: all(_waiting(child) for child in children), timeout_s=10)
    assert parent.cancel() == "cancelled"
    with pytest.raises(nf.RunCancelled):
        parent.result(timeout_s=5)
    assert [child.status() for child in children] == ["cancelled", "cancelled"]


@nf.workflow
def fickle(url: str) -> str:
    client = redis.Redis.from_url(url)
    flipped = client.get("fickle") is not None  # read outside any component: not replayed
    client.close()
    if flipped:
        add_one(2)
    else:
        effect(url, "fickle-effect")
    nf.wait_for_input("go")
    return "done"


def test_a_replay_that_makes_other_calls_fails_with_a_nondeterminism_error(
    runtime, worker, redis_url, r
) -> None:
    worker()
    run = fickle.submit(redis_url)
    wait_until(lambda: _waiting(run), timeout_s=10)
    r.set("fickle", "1")
    run.send_input("go", True)
    with pytest.raises(nf.RunFailed) as info:
        run.result(timeout_s=10)
    assert info.value.error_type == "NondeterminismError"
    assert "'add_one' where the run had made 'effect'" in str(info.value)


def test_waiting_runs_are_listed_and_their_keys_do_not_expire(
    runtime, worker, redis_url, r
) -> None:
    worker()
    run = publish.submit(redis_url, "list")
    wait_until(lambda: _waiting(run), timeout_s=10)
    frame = nf.runs(status="waiting")
    assert frame.run_id.tolist() == [run.id]
    assert r.ttl(c.run_meta(run.id)) == -1


def test_a_waiting_run_survives_restarts_of_its_worker_the_server_and_the_client(
    runtime, tmp_path
) -> None:
    import subprocess
    import sys

    from nbflow.runtime import embedded
    from nbflow.runtime.client import Runtime

    from ..conftest import ROOT, TEST_SECRET, spawn_worker, stop_workers

    home = tmp_path / "home"
    url = embedded.ensure_server(home)
    rt = Runtime(url, secret=TEST_SECRET, cluster=False)
    procs = [spawn_worker(url, "rt_apps", app_dir=ROOT / "tests" / "runtime")]
    try:
        run_id = rt.start("approval", {"url": url, "tag": "all"}).id
        wait_until(lambda: rt.attach(run_id).status() == "waiting", timeout_s=15)
        stop_workers(procs)  # kill -9 of every worker
        rt.close()
        embedded.stop_server(home)  # and of the server; its append-only file keeps the run
        url = embedded.ensure_server(home)
        # A new process (a restarted kernel) answers.
        answer = (
            "from nbflow.runtime.client import Runtime; "
            f"rt = Runtime({url!r}, secret={TEST_SECRET!r}); "
            f"rt.attach({run_id!r}).send_input('approve', True)"
        )
        subprocess.run([sys.executable, "-c", answer], check=True, timeout=60)
        procs.append(spawn_worker(url, "rt_apps", app_dir=ROOT / "tests" / "runtime"))
        rt = Runtime(url, secret=TEST_SECRET, cluster=False)
        assert rt.attach(run_id).result(timeout_s=30) == "published"
        assert [rt.redis.get(f"effects:all:{i}") for i in (0, 1)] == [b"1", b"1"]
    finally:
        stop_workers(procs)
        rt.close()
        embedded.stop_server(home)


@nf.workflow
def grows_a_plan(url: str, n: int) -> dict[str, Any]:
    plan: dict[str, Any] = {"steps": [], "notes": ""}
    for i in range(n):
        plan["steps"].append(i)
        plan["notes"] += f"note {i}; "
        nf.publish("plan", plan)
        if i == n // 2:
            nf.wait_for_input("go")  # a new attempt replays the publishes before it
    return plan


def test_published_state_streams_once_across_attempts_and_reads_back(
    runtime, worker, redis_url, monkeypatch
) -> None:
    from nbflow._state import apply

    monkeypatch.setattr("nbflow._state.PUBLISH_INTERVAL_S", 0.0)  # a patch per publish
    worker()
    run = grows_a_plan.submit(redis_url, 6)
    wait_until(lambda: _waiting(run), timeout_s=10)
    assert run.state("plan") == {"steps": [0, 1, 2, 3], "notes": "note 0; note 1; note 2; note 3; "}
    run.send_input("go", True)
    final = run.result(timeout_s=10)
    assert run.state("plan") == final
    patches = [e["patch"] for e in run.events() if e["type"] == "state.patch"]
    assert len(patches) == 6  # none repeated by the replay
    rebuilt = None
    for patch in patches:
        rebuilt = apply(rebuilt, patch)
    assert rebuilt == final == run.trace().state.published["plan"]


def test_a_fan_out_survives_a_worker_killed_mid_way_with_every_result_in_order(
    runtime, worker_process, redis_url, r
) -> None:
    first, _second = worker_process("--concurrency", "4"), worker_process("--concurrency", "4")
    n = 60
    parent = runtime.start("fan_parent", {"url": redis_url, "tag": "fan", "n": n, "sleep_s": 0.3})
    wait_until(lambda: len(r.keys("effects:fan:*")) >= n // 3, timeout_s=30)
    first.send_signal(signal.SIGKILL)
    first.wait(5)
    worker_process("--concurrency", "4")
    assert parent.result(timeout_s=90) == [i * 10 for i in range(n)]
    lost = [c for c in parent.children() if c.meta().get("restarts")]
    assert lost, "the kill hit no child: the test did not test the fault"
    children = parent.children()
    assert len(children) == n == len({child.id for child in children})  # none started twice
    assert {child.status() for child in children} == {"succeeded"}
    assert all(int(r.get(f"effects:fan:{i}")) >= 1 for i in range(n))


@nf.component
def slow_effect(url: str, key: str) -> int:
    time.sleep(0.6)
    return _count(url, key)


@nf.workflow
def works_then_waits(url: str) -> str:
    slow_effect(url, "before-wait")
    nf.wait_for_input("go")
    return "answered"


def test_a_run_cancelled_on_its_way_to_a_wait_ends_cancelled_instead_of_waiting(
    runtime, worker, redis_url, r
) -> None:
    worker()
    run = works_then_waits.submit(redis_url)
    wait_until(lambda: run.status() == "running", timeout_s=10)
    assert run.cancel() == "requested"
    with pytest.raises(nf.RunCancelled):
        run.result(timeout_s=10)
    assert "run.waiting" not in [e["type"] for e in run.events()]


def test_suspend_refuses_to_wait_for_a_run_asked_to_cancel_and_for_a_lost_attempt(r) -> None:
    from nbflow.runtime import scripts

    run_id = "0123456789abcdef"
    keys = [c.run_lease(run_id), c.run_meta(run_id), c.run_log(run_id), c.run_steps(run_id)]
    r.hset(c.run_meta(run_id), mapping={"status": "running", "fence": "1/w"})

    def suspend(token: str) -> int:
        args = [token, '{"kind":"sleep"}', "/sleep:#1", '{"type":"run.waiting"}', run_id, "", 0, 0]
        return int(r.eval(scripts.SUSPEND, len(keys), *keys, *args))

    assert suspend("2/v") == 0  # not the attempt holding the run: nothing happens
    r.hset(c.run_meta(run_id), "cancel_requested", "1")
    assert suspend("1/w") == -1  # the worker then ends it cancelled
    assert r.hget(c.run_meta(run_id), "status") == b"running"
    r.hdel(c.run_meta(run_id), "cancel_requested")
    assert suspend("1/w") == 1
    assert r.hget(c.run_meta(run_id), "status") == b"waiting"
