"""The runtime end to end: real Redis, real workers (threads and processes)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
import redis

import nbflow as nf
from nbflow import constants as c
from nbflow.runtime import codeship
from nbflow.runtime.client import Runtime
from nbflow.runtime.connection import RawConnection
from nbflow.runtime.run import Run

from ..conftest import TEST_SECRET, last_run, stop_workers, wait_until


@nf.component
def double(x: int) -> int:
    return x * 2


@nf.workflow
def pipeline(x: int) -> int:
    nf.progress("double")
    y = double(x)
    nf.emit(f"y={y}")
    return double(y) + 1


@nf.workflow
def broken(x: int) -> int:
    double(x)
    raise ValueError(f"bad input {x}")


def _types(run: Any) -> list[str]:
    return [e["type"] for e in run.events()]


def test_submitted_run_returns_the_workflow_value_and_the_same_trace_as_in_process(
    runtime, worker
) -> None:
    worker()
    run = pipeline.submit(3)
    assert run.result(timeout_s=10) == 13
    assert run.status() == "succeeded"
    remote = run.trace().spans[["name", "kind", "status", "parent_id"]]
    assert pipeline(3) == 13
    local = last_run().trace().spans[["name", "kind", "status"]]
    assert remote[["name", "kind", "status"]].values.tolist() == local.values.tolist()
    root = remote.iloc[0]
    assert root["parent_id"] is None or root["parent_id"] != root["parent_id"]  # None/NaN
    assert run.trace().emitted == "y=6"
    assert run.meta()["progress"] == {"double": "done"}


def test_event_ids_are_the_stream_ids_unique_and_ordered(runtime, worker) -> None:
    worker()
    run = pipeline.submit(1)
    run.result(timeout_s=10)
    events = list(run.events())
    ids = [e["id"] for e in events]
    raw_ids = [i.decode() for i, _ in runtime.redis.xrange(c.run_log(run.id))]
    assert ids == raw_ids
    assert len(set(ids)) == len(ids)
    assert events[0]["type"] == "run.queued" and events[-1]["type"] == "run.succeeded"


def test_failed_run_raises_run_failed_with_the_remote_traceback(runtime, worker) -> None:
    worker()
    run = broken.submit(7)
    with pytest.raises(nf.RunFailed) as info:
        run.result(timeout_s=10)
    assert "bad input 7" in str(info.value)
    assert "in broken" in info.value.remote_traceback
    assert info.value.error_type == "ValueError"
    spans = run.trace().spans
    assert spans.set_index("name").loc["double", "status"] == "ok"
    assert spans.set_index("name").loc["broken", "status"] == "error"


@nf.workflow
def returns_a_lock() -> Any:
    import threading

    return {"lock": threading.Lock()}


def test_a_result_that_cannot_be_pickled_is_a_clear_error_not_none(runtime, worker) -> None:
    worker()
    run = returns_a_lock.submit()
    with pytest.raises(nf.ResultNotKept) as info:
        run.result(timeout_s=10)
    assert run.status() == "succeeded"  # the work itself is done and recorded
    assert "cannot be pickled" in str(info.value) and "lock" in str(info.value)
    assert "lock" in json.dumps(info.value.output)  # the preview is kept
    ended = list(run.events())[-1]
    assert ended["type"] == "run.succeeded" and "cannot be pickled" in ended["result_error"]


def test_a_run_accepted_with_no_worker_up_runs_when_one_starts(runtime, worker) -> None:
    run = pipeline.submit(2)
    time.sleep(0.3)
    assert run.status() == "queued"
    worker()
    assert run.result(timeout_s=10) == 9


def test_reattach_replays_the_full_log_then_resumes_from_any_id(runtime, worker) -> None:
    worker()
    run = pipeline.submit(5)
    run.result(timeout_s=10)
    again = nf.attach(run.id)
    full = list(again.events())
    middle = full[3]["id"]
    rest = list(again.events(after=middle))
    assert [e["id"] for e in rest] == [e["id"] for e in full[4:]]
    with pytest.raises(nf.RunNotFound):
        nf.attach("0123456789abcdef")
    with pytest.raises(nf.ConfigError):
        list(again.events(after="not-an-id"))


def test_a_follower_started_before_the_run_sees_every_event(runtime, worker) -> None:
    run = pipeline.submit(4)
    seen: list[str] = []
    import threading

    follower = threading.Thread(
        target=lambda: seen.extend(e["id"] for e in nf.attach(run.id).events())
    )
    follower.start()
    time.sleep(0.2)
    worker()
    follower.join(10)
    assert seen == [e["id"] for e in run.events()]


@nf.component
def nap(s: float) -> float:
    time.sleep(s)
    return s


@nf.workflow
def napper(n: int, s: float) -> int:
    for _ in range(n):
        nap(s)
    return n


def test_cancel_stops_a_running_run_at_the_next_component_boundary(runtime, worker) -> None:
    worker()
    run = napper.submit(50, 0.1)
    wait_until(lambda: run.status() == "running", timeout_s=10)
    time.sleep(0.3)
    assert run.cancel() == "requested"
    with pytest.raises(nf.RunCancelled):
        run.result(timeout_s=10)
    types = _types(run)
    assert types[-1] == "run.cancelled"
    naps = sum(1 for e in run.events() if e["type"] == "span.started" and e["name"] == "nap")
    assert naps < 20


def test_cancel_of_a_queued_run_ends_it_before_any_worker_sees_it(runtime, worker) -> None:
    run = napper.submit(1, 0.0)
    assert run.cancel() == "cancelled"
    assert run.status() == "cancelled"
    worker()
    time.sleep(0.5)
    assert _types(run) == ["run.queued", "run.cancelled"]


@nf.workflow
async def async_sleeper(s: float) -> str:
    await asyncio.sleep(s)
    return "woke"


def test_cancel_interrupts_an_async_step_at_once(runtime, worker) -> None:
    worker()
    run = async_sleeper.submit(30.0)
    wait_until(lambda: run.status() == "running", timeout_s=10)
    started = time.monotonic()
    run.cancel()
    with pytest.raises(nf.RunCancelled):
        run.result(timeout_s=10)
    assert time.monotonic() - started < 5


def test_two_workers_racing_run_each_run_exactly_once(runtime, worker, redis_url) -> None:
    worker(concurrency=4)
    worker(concurrency=4)
    runs = [counted.submit(redis_url, i) for i in range(40)]
    assert sorted(r.result(timeout_s=30) for r in runs) == list(range(40))
    client = redis.Redis.from_url(redis_url)
    counts = [int(client.get(f"counted:{i}") or 0) for i in range(40)]
    client.close()
    assert counts == [1] * 40


@nf.workflow
def counted(url: str, i: int) -> int:
    client = redis.Redis.from_url(url)
    client.incr(f"counted:{i}")
    client.close()
    return i


def test_a_worker_runs_as_many_sync_runs_at_once_as_its_concurrency(
    runtime, worker, r, redis_url
) -> None:
    worker(concurrency=3)
    runs = [gate.submit(redis_url, "gate") for _ in range(4)]

    wait_until(lambda: int(r.get("gate:in") or 0) == 3, timeout_s=10)
    time.sleep(0.3)
    assert int(r.get("gate:in") or 0) == 3  # the fourth waits for a free slot
    r.set("gate:open", 1)

    assert [run.result(timeout_s=10) for run in runs] == [1] * 4
    assert int(r.get("gate:in") or 0) == 4


def test_a_run_that_computes_without_blocking_does_not_hold_up_reading(runtime, worker) -> None:
    worker(concurrency=2)
    busy = spin.submit(4.0)
    wait_until(lambda: busy.status() == "running", timeout_s=10)
    # The reading passes on at the latest one interpreter switch interval after the
    # busy run started, so the next run is read and served beside it.
    assert pipeline.submit(1).result(timeout_s=3) == 5
    assert busy.status() == "running"
    assert busy.result(timeout_s=15) > 0


@nf.workflow
def spin(seconds: float) -> int:
    """Computes for ``seconds``, never blocking: it gives up the interpreter only when
    made to."""
    deadline = time.monotonic() + seconds
    turns = 0
    while time.monotonic() < deadline:
        turns += 1
    return turns


@nf.workflow
def gate(url: str, key: str) -> int:
    """Counts itself in, then blocks its thread until the test opens the gate."""
    client = redis.Redis.from_url(url)
    client.incr(f"{key}:in")
    while not client.exists(f"{key}:open"):
        time.sleep(0.01)
    client.close()
    return 1


def test_garbage_in_the_work_stream_does_not_kill_the_worker(runtime, worker, r) -> None:
    worker()
    r.xadd(c.WORK_STREAM, {"foo": "bar"})
    r.xadd(c.WORK_STREAM, {"run": "no such run!"})
    r.xadd(c.WORK_STREAM, {"run": "ffffffffffffffff"})
    assert pipeline.submit(1).result(timeout_s=10) == 5


def test_unsigned_or_tampered_code_fails_that_run_and_the_worker_lives(
    runtime, worker, redis_url, caplog
) -> None:
    worker()
    forged = Runtime(redis_url, secret=b"another secret", cluster=False)
    run = runtime.attach(forged.submit(pipeline, (1,), {}).id)
    forged.close()
    with pytest.raises(nf.RunFailed) as info:
        run.result(timeout_s=10)
    assert "signature" in str(info.value)
    assert run.meta()["reason"] == "payload_rejected"
    assert f"run {run.id} refused (payload_rejected)" in caplog.text  # the worker's log says so
    assert pipeline.submit(1).result(timeout_s=10) == 5


def test_signed_values_round_trip_plain_data_and_notebook_defined_types() -> None:
    # defined here, like a notebook's class: only cloudpickle ships it
    class Tagged(dict[str, Any]):
        pass

    plain = {"a": [1, 2.5, None, True], "b": ("x", b"y", frozenset({3})), 4: {5: "z"}}
    assert _round_trip(plain) == plain
    tagged = _round_trip([Tagged(k=1)])
    assert type(tagged[0]).__name__ == "Tagged" and tagged[0] == {"k": 1}
    looped: list[Any] = [1]
    looped.extend([looped] * 50)  # shared and recursive: met twice, so cloudpickle's job
    back = _round_trip(looped)
    assert back[0] == 1 and back[1] is back and back[50] is back
    with pytest.raises(nf.PayloadRejected):
        codeship.unpack(codeship.pack(plain, TEST_SECRET, HERE), b"another secret", HERE)


HERE = codeship.result_for("0123456789abcdef")


def _round_trip(value: Any) -> Any:
    return codeship.unpack(codeship.pack(value, TEST_SECRET, HERE), TEST_SECRET, HERE)


def test_a_workflow_its_module_defines_ships_by_name_and_copies_ship_by_value(
    monkeypatch,
) -> None:
    blob = codeship.pack(pipeline, TEST_SECRET, HERE)
    assert __name__.encode() in blob and b"double" not in blob  # a name, not the code
    assert codeship.unpack(blob, TEST_SECRET, HERE) is pipeline
    tuned = pipeline.with_retry(2)
    back = _round_trip(tuned)
    assert back is not tuned and back.retry.attempts == 2
    # The module's name rebound to a copy: a worker importing the module would
    # not see that copy, so it still travels by value.
    monkeypatch.setattr(sys.modules[__name__], "pipeline", tuned)
    assert _round_trip(tuned) is not tuned
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        by_value = _round_trip(double)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert by_value is not double and by_value.fn(3) == 6


def test_code_the_server_lost_is_shipped_again_and_code_in_use_does_not_expire(
    runtime, worker, r
) -> None:
    worker()
    first = pipeline.submit(1)
    key = c.CODE_KEY.format(digest=first.meta()["code"])
    assert first.result(timeout_s=10) == 5
    r.delete(key)  # as after a flush or a restart without persistence
    assert pipeline.submit(2).result(timeout_s=10) == 9
    r.expire(key, 100)
    pipeline.submit(3).wait(timeout_s=10)
    assert r.ttl(key) > 100  # pushed back by the submit
    runtime.deploy(pipeline)
    pipeline.submit(4).wait(timeout_s=10)
    assert r.ttl(key) == -1  # deployed code keeps no expiry
    r.delete(key)
    with pytest.raises(nf.PayloadRejected, match="deploy it again"):
        runtime.start("pipeline", {"x": 1})


def test_a_worker_carries_on_after_the_server_forgets_its_scripts(runtime, worker, r) -> None:
    worker()
    assert pipeline.submit(1).result(timeout_s=10) == 5
    r.script_flush()  # as after a server restart: the worker's next claim gets NOSCRIPT
    assert pipeline.submit(2).result(timeout_s=10) == 9


def test_a_raw_connection_reopens_after_the_server_drops_it(r, redis_url) -> None:
    client = redis.Redis.from_url(redis_url)
    raw = RawConnection(client)
    [conn_id] = raw.call(["CLIENT", "ID"])
    r.client_kill_filter(_id=conn_id)

    assert raw.call(["PING"], ["ECHO", "x"]) == [b"PONG", b"x"]
    [error] = raw.call(["NO-SUCH-COMMAND"])
    assert isinstance(error, redis.ResponseError)  # returned, not raised
    r.script_flush()
    assert raw.script("return ARGV[1] .. KEYS[1]", ["k"], ["v"]) == b"vk"
    raw.close()
    client.close()


def test_a_work_message_whose_reader_died_before_claiming_it_is_run(
    runtime, worker, r, monkeypatch
) -> None:
    monkeypatch.setattr(c, "RECLAIM_IDLE_MS", 300)
    run = pipeline.submit(3)
    r.xgroup_create(c.WORK_STREAM, c.WORK_GROUP, id="0")
    given = r.xreadgroup(c.WORK_GROUP, "a-worker-that-died", {c.WORK_STREAM: ">"})
    assert given and len(given[0][1]) == 1  # the message is now pending under a dead name
    worker()
    assert run.result(timeout_s=15) == 13
    assert r.xpending(c.WORK_STREAM, c.WORK_GROUP)["pending"] == 0


def test_an_idle_sweep_drops_expired_runs_and_silent_workers_from_the_indexes(
    runtime, worker, r, caplog
) -> None:
    expired_s = time.time() - c.RETENTION_S - 60
    r.zadd(c.RUNS_INDEX, {"an-expired-run": expired_s})
    r.zadd(c.WORKERS, {"a-worker-gone-for-good": int(time.time() * 1000) - 120_000})
    worker()
    wait_until(lambda: r.zscore(c.RUNS_INDEX, "an-expired-run") is None, 10)
    wait_until(lambda: r.zscore(c.WORKERS, "a-worker-gone-for-good") is None, 10)
    assert "sweep failed" not in caplog.text


def _nbflow_script() -> Path:
    script = Path(sys.executable).with_name("nbflow")
    if not script.exists():
        pytest.skip("no nbflow console script beside this Python")
    return script


def test_the_worker_command_imports_its_app_from_the_directory_it_starts_in(
    runtime, redis_url, tmp_path
) -> None:
    (tmp_path / "my_flows.py").write_text(
        "import nbflow as nf\n\n\n@nf.workflow\ndef shout(text: str) -> str:\n"
        "    return text.upper()\n"
    )
    env = {**os.environ, "NBFLOW_SECRET": TEST_SECRET.decode()}
    env.pop("PYTHONPATH", None)
    argv = [str(_nbflow_script()), "worker", "--redis", redis_url, "--app", "my_flows"]
    proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stderr=subprocess.PIPE)
    try:
        run = runtime.start("shout", {"text": "hi"})
        assert run.result(timeout_s=20) == "HI"
    finally:
        stop_workers([proc])


def test_the_worker_command_names_an_app_module_it_cannot_find(redis_url, tmp_path) -> None:
    argv = [str(_nbflow_script()), "worker", "--redis", redis_url, "--app", "no_such_flows"]
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "cannot import the app module 'no_such_flows'" in done.stderr
    assert str(tmp_path) in done.stderr and "Traceback" not in done.stderr


def test_a_workflow_from_a_module_the_worker_cannot_import_fails_saying_how_to_fix_it(
    runtime, worker_process, tmp_path, monkeypatch
) -> None:
    (tmp_path / "beside_the_notebook.py").write_text(
        "import nbflow as nf\n\n\n@nf.workflow\ndef local_flow(x: int) -> int:\n    return x + 1\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))  # importable here, not by the worker
    from beside_the_notebook import local_flow  # type: ignore[import-not-found]

    worker_process()
    run = local_flow.submit(1)
    with pytest.raises(nf.RunFailed) as info:
        run.result(timeout_s=20)  # it fails: it does not hang as "running"
    message = str(info.value)
    assert "cannot load the run's code" in message
    assert "No module named 'beside_the_notebook'" in message
    assert "register_pickle_by_value" in message
    assert run.meta()["reason"] == "payload_unloadable"
    sys.modules.pop("beside_the_notebook", None)


def test_code_from_another_python_version_is_refused_with_a_clear_reason(
    runtime, worker, r
) -> None:
    worker()
    blob = codeship.pack(pipeline, TEST_SECRET, codeship.code_for("pipeline"))
    header_len = int.from_bytes(blob[4:8], "big")
    payload = blob[8 + header_len :]
    sig = codeship._sign(TEST_SECRET, "3.99", "code", "pipeline", payload)
    header = json.dumps({"py": "3.99", "role": "code", "for": "pipeline", "sig": sig}).encode()
    forged = codeship.MAGIC + len(header).to_bytes(4, "big") + header + payload
    run = runtime.submit(pipeline, (1,), {})
    run.wait(timeout_s=10)
    digest = codeship.digest(forged)
    r.set(c.CODE_KEY.format(digest=digest), forged)
    request = runtime._request("pipeline", digest, (1,), {}, (), {})
    assert runtime._enqueue([request])
    second = runtime.attach(request[0])
    with pytest.raises(nf.RunFailed) as info:
        second.result(timeout_s=10)
    assert "Python 3.99" in str(info.value)


def test_a_run_whose_worker_vanished_past_max_restarts_fails_with_worker_lost(
    runtime, worker, r
) -> None:
    run = napper.submit(1, 0.0)
    r.delete(c.WORK_STREAM)  # as if a worker had taken it and then died
    r.hset(c.run_meta(run.id), mapping={"status": "running", "restarts": "0"})
    r.zadd(c.LEASES, {run.id: 0})
    worker(max_restarts=0)
    with pytest.raises(nf.RunFailed):
        run.result(timeout_s=10)
    assert run.meta()["reason"] == "worker_lost"
    assert _types(run)[-1] == "run.failed"


def test_a_run_whose_worker_vanished_is_restarted_and_says_why(runtime, worker, r) -> None:
    run = napper.submit(2, 0.0)
    r.delete(c.WORK_STREAM)
    r.hset(c.run_meta(run.id), mapping={"status": "running"})
    r.zadd(c.LEASES, {run.id: 0})
    worker()
    assert run.result(timeout_s=10) == 2
    restarted = [e for e in run.events() if e["type"] == "run.restarted"]
    assert restarted and restarted[0]["reason"] == "worker_lost"


def _wait_for_recorded_steps(run: Any, n: int) -> None:
    """Until ``n`` steps are recorded (each with its span.finished, in one atomic write).

    A step's side effect comes just before its record: stopping a worker between the
    two runs the step again after the restart, as at-least-once steps do.
    """

    def recorded() -> bool:
        return sum(e["type"] == "span.finished" for e in run.events(follow=False)) >= n

    wait_until(recorded, timeout_s=15)


def test_kill_9_mid_run_resumes_elsewhere_and_every_step_happened_once(
    runtime, worker_process, redis_url, r
) -> None:
    first = worker_process()
    run = runtime.start("steps", {"url": redis_url, "tag": "k9", "n": 6, "sleep_s": 0.4})
    _wait_for_recorded_steps(run, 2)
    first.send_signal(signal.SIGKILL)
    first.wait(5)
    worker_process()
    assert run.result(timeout_s=30) == sum(i * 10 for i in range(6))
    assert [int(r.get(f"effects:k9:{i}") or 0) for i in range(6)] == [1] * 6
    events = list(run.events())
    restarted = [e for e in events if e["type"] == "run.restarted"]
    assert restarted[0]["reason"] == "worker_lost"
    started = [e for e in events if e["type"] == "run.started"]
    assert [(e["workflow"], e["attempt"]) for e in started] == [("steps", 1), ("steps", 2)]
    assert started[0]["worker"] != started[1]["worker"]


def test_sigterm_drains_then_hands_back_and_another_worker_finishes(
    runtime, worker_process, redis_url, r
) -> None:
    first = worker_process("--drain-timeout", "0.3")
    run = runtime.start("blocking", {"url": redis_url, "tag": "drain", "sleep_s": 3.0})
    wait_until(lambda: r.get("started:drain") is not None, timeout_s=15)
    first.send_signal(signal.SIGTERM)
    assert first.wait(10) == 0
    restarted = [e for e in run.events(follow=False) if e["type"] == "run.restarted"]
    assert restarted and restarted[0]["reason"] == "worker_draining"
    worker_process()
    assert run.result(timeout_s=30) == "done"


def test_sigterm_with_nothing_running_exits_at_once(worker_process) -> None:
    proc = worker_process()
    time.sleep(1.0)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert time.monotonic() - started < 3


def test_the_log_is_capped_with_a_visible_marker(runtime, worker) -> None:
    worker(max_log_events=20)

    @nf.workflow
    def chatty(n: int) -> int:
        for i in range(n):
            nf.emit(str(i))
        return n

    run = chatty.submit(100)
    assert run.result(timeout_s=10) == 100
    types = _types(run)
    assert "log.truncated" in types
    assert types[-1] == "run.succeeded"
    assert len(types) < 30


def test_finished_runs_expire_after_their_retention(runtime, worker, r) -> None:
    w = worker()
    w.options.retention_s = 100
    run = pipeline.submit(1)
    run.result(timeout_s=10)
    assert 0 < r.ttl(c.run_log(run.id)) <= 100
    assert 0 < r.ttl(c.run_meta(run.id)) <= 100


def test_runs_lists_runs_newest_first_with_their_metadata(runtime, worker) -> None:
    worker()
    first = pipeline.submit(1)
    second = broken.submit(1)
    first.wait(timeout_s=10)
    second.wait(timeout_s=10)
    frame = nf.runs()
    assert list(frame["run_id"][:2]) == [second.id, first.id]
    assert list(frame["status"][:2]) == ["failed", "succeeded"]
    assert set(frame.columns) >= {"workflow", "created_at", "user", "duration_s", "total_tokens"}


def test_runs_complete_across_two_workers_on_a_three_master_cluster(
    tmp_path, worker, runtime
) -> None:
    from nbflow.runtime.client import Runtime, set_runtime

    from ..redis_servers import start_cluster

    with start_cluster(tmp_path) as cluster:
        url = f"{cluster.url}?cluster=1"
        rt = Runtime(url, secret=TEST_SECRET)
        set_runtime(rt)
        try:
            worker(url=url)
            worker(url=url)
            runs = [pipeline.submit(i) for i in range(12)]
            assert [r.result(timeout_s=30) for r in runs] == [4 * i + 1 for i in range(12)]
            slots = {rt.redis.keyslot(c.run_log(r.id)) for r in runs}
            assert len(slots) > 1  # runs really are spread over the cluster
            assert all(
                rt.redis.keyslot(c.run_meta(r.id)) == rt.redis.keyslot(c.run_log(r.id))
                for r in runs
            )
            assert len(rt.runs()) == 12
            # Code the cluster lost is shipped again; code in use has its expiry pushed back.
            code = c.CODE_KEY.format(digest=runs[0].meta()["code"])
            rt.redis.delete(code)
            assert pipeline.submit(20).result(timeout_s=30) == 81
            rt.redis.expire(code, 100)
            assert pipeline.submit(21).result(timeout_s=30) == 85
            assert rt.redis.ttl(code) > 100
        finally:
            set_runtime(runtime)
            from ..redis_servers import close_cluster_client

            close_cluster_client(rt.redis)


def test_a_server_restart_with_persistence_mid_run_loses_nothing(worker_process, runtime) -> None:
    import os
    import tempfile

    from nbflow.runtime import embedded
    from nbflow.runtime.client import Runtime

    home = tempfile.mkdtemp(prefix="nbf-p-")
    url = embedded.ensure_server(home)
    rt = Runtime(url, secret=TEST_SECRET, cluster=False)
    env_url = os.environ.get("NBFLOW_TEST_REDIS_URL")
    try:
        run = rt.start("steps", {"url": url, "tag": "persist", "n": 6, "sleep_s": 0.5})
        proc = _worker_on(url)
        _wait_for_recorded_steps(run, 2)
        waiting = ThreadPoolExecutor(1).submit(run.result, timeout_s=60)  # across the restart
        followed = ThreadPoolExecutor(1).submit(lambda: [e["type"] for e in run.events()])
        time.sleep(0.05)  # both are reading when the server goes (or find it gone: as good)
        embedded.stop_server(home)
        time.sleep(0.5)
        embedded.ensure_server(home)
        assert waiting.result(60) == sum(i * 10 for i in range(6))
        assert followed.result(60)[-1] == "run.succeeded"
        assert run.result(timeout_s=30) == sum(i * 10 for i in range(6))
        ids = [e["id"] for e in run.events()]
        assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))
        assert [int(rt.redis.get(f"effects:persist:{i}") or 0) for i in range(6)] == [1] * 6
    finally:
        del env_url
        stop_workers([proc])
        rt.close()
        embedded.stop_server(home)


def test_a_reader_gives_up_on_a_runtime_gone_for_longer_than_its_patience(monkeypatch) -> None:
    from nbflow.runtime import run as run_module

    from ..redis_servers import free_ports

    monkeypatch.setattr(run_module, "RECONNECT_PATIENCE_S", 0.5)
    [port] = free_ports(1)  # nothing listens there
    gone = Runtime(f"redis://127.0.0.1:{port}", secret=TEST_SECRET, cluster=False)
    started = time.monotonic()
    with pytest.raises(nf.RuntimeUnavailable, match=r"no answer for 0\.5 s"):
        Run(gone, "0123456789abcdef").wait(timeout_s=30)
    assert time.monotonic() - started < 10
    # A one-off read (a live view's poll, which retries at its own pace) is not held up.
    monkeypatch.setattr(run_module, "RECONNECT_PATIENCE_S", 60.0)
    started = time.monotonic()
    with pytest.raises(redis.ConnectionError):
        list(Run(gone, "0123456789abcdef").events(follow=False))
    assert time.monotonic() - started < 10
    gone.close()


def _worker_on(url: str) -> Any:
    from ..conftest import ROOT, spawn_worker

    return spawn_worker(url, "rt_apps", app_dir=ROOT / "tests" / "runtime", lease_ms=2_000)


def test_submit_many_queues_every_run_in_one_go(runtime, worker) -> None:
    worker(concurrency=8)
    runs = pipeline.submit_many([(i,) for i in range(20)] + [{"x": 100}])
    assert len({r.id for r in runs}) == 21
    assert [r.result(timeout_s=20) for r in runs] == [4 * i + 1 for i in range(20)] + [401]
    assert last_run().id == runs[-1].id


def test_a_batch_writes_each_runs_events_in_one_call_in_order_with_its_steps(redis_url, r) -> None:
    from nbflow import _events as ev
    from nbflow.runtime.connection import async_client
    from nbflow.runtime.protocol import encode_event
    from nbflow.runtime.writer import EventWriter, RedisSink

    for run_id in ("a", "b"):  # attempt 1 of worker w holds them; "c" was lost to attempt 2
        r.set(c.run_lease(run_id), "1/w")
        r.hset(c.run_meta(run_id), mapping={"status": "running", "fence": "1/w"})
    r.hset(c.run_meta("c"), mapping={"status": "running", "fence": "2/v"})
    evals_before = _evals(r)

    async def write() -> None:
        client = async_client(redis_url, cluster=False)
        writer = EventWriter(client, asyncio.get_running_loop())
        sinks = {run_id: RedisSink(writer, run_id, "1/w", TEST_SECRET) for run_id in "abc"}
        sinks["b"].emit(ev.make(ev.PROGRESS, step="draft", state="running"))
        for i in range(3):  # interleaved, all queued before the writer runs: one batch
            for sink in sinks.values():
                sink.emit(ev.make(ev.OUTPUT, text=str(i)))
        step = sinks["a"].commit_step(ev.make(ev.SPAN_FINISHED, span_id="s1"), "step-1", 42)
        assert step is not None
        ended = ev.make(ev.RUN_SUCCEEDED)
        finish = ["succeeded", encode_event(ended), 60, "b", "progress", '{"draft":"done"}']
        finished = asyncio.create_task(writer.call("b", "1/w", "finish", finish))
        task = asyncio.create_task(writer.run())
        assert await asyncio.wait_for(finished, 5) == 1
        await asyncio.wait_for(asyncio.wrap_future(step), 5)
        task.cancel()
        await writer.close()
        await client.aclose()
        assert writer.lost == {("c", "1/w")}

    asyncio.run(write())
    assert _evals(r) - evals_before == 3  # one script call per run, its finish included
    texts = [json.loads(f[b"e"])["text"] for _i, f in r.xrange(c.run_log("a"))[:3]]
    assert texts == ["0", "1", "2"] and r.xlen(c.run_log("a")) == 4
    step = codeship.step_for("a", "step-1")
    assert codeship.unpack(r.hget(c.run_steps("a"), "step-1"), TEST_SECRET, step) == 42
    types = [json.loads(f[b"e"])["type"] for _i, f in r.xrange(c.run_log("b"))]
    assert types == ["progress", "output", "output", "output", "run.succeeded"]
    assert r.hget(c.run_meta("b"), "status") == b"succeeded" and not r.exists(c.run_lease("b"))
    assert json.loads(r.hget(c.run_meta("b"), "progress")) == {"draft": "done"}
    assert r.xlen(c.run_log("c")) == 0


def _evals(r: redis.Redis) -> int:
    """Script calls so far, by text or by digest."""
    stats = r.info("commandstats")
    return sum(
        int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("eval", "evalsha")
    )
