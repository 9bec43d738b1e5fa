"""The embedded default: a shared, detached, persistent Valkey server and the local worker pool."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot

from nbflow import constants
from nbflow.errors import RuntimeUnavailable
from nbflow.runtime import detached, embedded, pool
from nbflow.runtime.client import Runtime
from tests.redis_servers import close_cluster_client, slot_ranges, start_cluster

from ..conftest import wait_until

REPO = Path(__file__).resolve().parents[2]
SLEEPER = [sys.executable, "-c", "import time; time.sleep(1000)"]
# A worker that starts a child of its own and notes the child's pid in the home.
PARENT = [
    sys.executable,
    "-c",
    "import os, subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(1000)'])\n"
    "note = os.path.join(os.environ['NBFLOW_HOME'], f'child-{os.getpid()}')\n"
    "with open(note + '.tmp', 'w') as f:\n"
    "    f.write(str(child.pid))\n"
    "os.replace(note + '.tmp', note)  # whole, or not there at all\n"
    "time.sleep(1000)",
]
# A worker that ignores SIGTERM, and says so once it does.
STUBBORN = [
    sys.executable,
    "-c",
    "import os, signal, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "open(os.path.join(os.environ['NBFLOW_HOME'], f'ready-{os.getpid()}'), 'w').close()\n"
    "time.sleep(1000)",
]
UNUSED_URL = "redis://127.0.0.1:1"  # the dummy workers never connect


@pytest.fixture
def home() -> Iterator[Path]:
    # Short on purpose: tmp_path can be too long for a unix socket path.
    path = Path(tempfile.mkdtemp(prefix="nbf-"))
    try:
        yield path
    finally:
        pool.stop_pool(path, timeout_s=5)
        embedded.stop_server(path)
        shutil.rmtree(path, ignore_errors=True)


def python(code: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def outputs(*procs: subprocess.Popen[str]) -> list[str]:
    results = []
    for proc in procs:
        with proc:
            out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        results.append(out.strip())
    return results


def worker_pids(home: Path) -> dict[int, int]:
    return {w["slot"]: w["pid"] for w in pool.pool_status(home)["workers"]}


# --- server -------------------------------------------------------------------
def test_second_ensure_server_reuses_the_running_server(home: Path) -> None:
    url = embedded.ensure_server(home)
    pid = embedded.server_status(home)["pid"]

    assert embedded.ensure_server(home) == url
    status = embedded.server_status(home)
    assert status["pid"] == pid and status["running"]
    with redis.Redis.from_url(url) as client:
        assert client.ping()
        assert client.config_get("port") == {"port": "0"}  # no TCP listener


def test_the_embedded_server_keeps_small_logs_small(home: Path) -> None:
    """A new stream node is allocated at stream-node-max-bytes: 1 KiB, not 4 KiB."""
    url = embedded.ensure_server(home)
    with redis.Redis.from_url(url) as client:
        wanted = str(constants.STREAM_NODE_MAX_BYTES)
        assert client.config_get("stream-node-max-bytes") == {"stream-node-max-bytes": wanted}
        client.xadd("log", {"e": "x" * 100})
        assert client.memory_usage("log", samples=0) < 2 * constants.STREAM_NODE_MAX_BYTES


def test_concurrent_starters_share_one_server(home: Path) -> None:
    code = (
        "import sys; from nbflow.runtime import embedded as e; print(e.ensure_server(sys.argv[1]))"
    )
    urls = outputs(python(code, str(home)), python(code, str(home)))

    assert urls[0] == urls[1]
    sock = unquote(urlparse(urls[0]).path)
    listing = subprocess.run(
        ["ps", "-ww", "-eo", "args="], capture_output=True, text=True, check=True
    )
    servers = [
        line for line in listing.stdout.splitlines() if "valkey-server" in line and sock in line
    ]
    assert len(servers) == 1


def test_data_survives_stop_and_start(home: Path) -> None:
    url = embedded.ensure_server(home)
    first_pid = embedded.server_status(home)["pid"]
    with redis.Redis.from_url(url) as client:
        client.set("nbflow:test", "kept")

    assert embedded.stop_server(home)
    assert not detached.process_running(first_pid)
    assert not embedded.server_status(home)["running"]
    assert embedded.stop_server(home) is False

    url = embedded.ensure_server(home)
    assert embedded.server_status(home)["pid"] != first_pid
    assert embedded.server_status(home)["aof_bytes"] > 0
    with redis.Redis.from_url(url) as client:
        assert client.get("nbflow:test") == b"kept"


def test_server_and_pool_outlive_the_process_that_started_them(home: Path) -> None:
    code = (
        "import json, sys\n"
        "from nbflow.runtime import embedded, pool\n"
        "url = embedded.ensure_server(sys.argv[1])\n"
        "pid = pool.ensure_pool(url, sys.argv[1], workers=1, worker_cmd=json.loads(sys.argv[2]))\n"
        "print(json.dumps({'url': url, 'pool': pid}))\n"
    )
    [out] = outputs(python(code, str(home), json.dumps(SLEEPER)))
    started = json.loads(out)

    with redis.Redis.from_url(started["url"]) as client:
        assert client.ping()
    server_pid = embedded.server_status(home)["pid"]
    status = pool.pool_status(home)
    assert status["running"] and status["supervisor_pid"] == started["pool"]
    assert [w["alive"] for w in status["workers"]] == [True]
    # Each leads its own session, so signals to the starter's process group miss them.
    assert os.getsid(server_pid) == server_pid
    assert os.getsid(started["pool"]) == started["pool"]


def test_deep_home_puts_the_socket_in_a_short_private_directory(home: Path) -> None:
    deep = home / ("d" * 100)
    sock = embedded.socket_path(embedded.resolve_home(deep))
    try:
        url = embedded.ensure_server(deep)
        assert Path(unquote(urlparse(url).path)) == sock
        assert sock.parent.parent == Path("/tmp") and sock.parent.name.startswith("nbflow-")
        assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
        with redis.Redis.from_url(url) as client:
            assert client.ping()
    finally:
        embedded.stop_server(deep)
    shutil.rmtree(sock.parent, ignore_errors=True)


def test_failed_start_reports_the_server_log(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = home / "fake-valkey"
    fake.write_text("#!/bin/sh\necho 'bad config line' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(embedded, "valkey_binary", lambda: fake)

    with pytest.raises(RuntimeUnavailable, match="bad config line"):
        embedded.ensure_server(home)
    assert not (home / constants.SERVER_STATE_FILE).exists()


def test_secret_is_private_stable_and_agreed_by_racing_callers(home: Path) -> None:
    with ThreadPoolExecutor(8) as threads:
        keys = set(threads.map(lambda _: embedded.secret(home), range(8)))

    [key] = keys
    assert re.fullmatch(rb"[0-9a-f]{64}", key)
    assert embedded.secret(home) == key
    assert stat.S_IMODE((home / constants.HOME_SECRET_FILE).stat().st_mode) == 0o600
    assert sorted(p.name for p in home.iterdir()) == [constants.HOME_SECRET_FILE]


# --- worker pool --------------------------------------------------------------
def test_pool_is_reused_and_replaces_a_killed_worker(home: Path) -> None:
    supervisor = pool.ensure_pool(UNUSED_URL, home, workers=2, worker_cmd=SLEEPER)
    assert pool.ensure_pool(UNUSED_URL, home, workers=2, worker_cmd=SLEEPER) == supervisor
    before = worker_pids(home)

    os.kill(before[0], signal.SIGKILL)

    wait_until(lambda: worker_pids(home)[0] != before[0], timeout_s=5)
    assert worker_pids(home)[1] == before[1]
    assert all(w["alive"] for w in pool.pool_status(home)["workers"])
    assert (home / constants.POOL_LOG_DIR / "worker-0.log").exists()


def test_a_pool_of_another_nbflow_version_is_replaced_by_the_next_caller(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = pool.ensure_pool(UNUSED_URL, home, workers=1, worker_cmd=SLEEPER, kill_after_s=1.0)
    assert pool.pool_status(home)["running"]
    monkeypatch.setattr(pool, "NBFLOW_VERSION", "99.0")  # this process was upgraded since
    new = pool.ensure_pool(UNUSED_URL, home, workers=1, worker_cmd=SLEEPER, kill_after_s=1.0)
    assert new != old
    assert not detached.process_running(old)
    assert pool.pool_status(home)["supervisor_pid"] == new


def test_crashing_worker_from_env_command_restarts_at_most_once_a_second(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    crasher = [sys.executable, "-c", "print('crashing', flush=True); raise SystemExit(3)"]
    monkeypatch.setenv(constants.ENV_WORKER_CMD, json.dumps(crasher))
    pool.ensure_pool(UNUSED_URL, home, workers=1)

    time.sleep(1.5)

    starts = (home / constants.POOL_LOG_DIR / "worker-0.log").read_text().count("crashing")
    assert 1 <= starts <= 3
    assert pool.pool_status(home)["running"]


def test_concurrent_ensure_pool_starts_one_supervisor(home: Path) -> None:
    code = (
        "import json, sys\n"
        "from nbflow.runtime import pool\n"
        "print(pool.ensure_pool(sys.argv[1], sys.argv[2], worker_cmd=json.loads(sys.argv[3])))\n"
    )
    args = (UNUSED_URL, str(home), json.dumps(SLEEPER))
    pids = outputs(python(code, *args), python(code, *args))

    assert pids[0] == pids[1] == str(pool.pool_status(home)["supervisor_pid"])


def test_sigterm_to_the_pool_leaves_no_workers_or_their_children(home: Path) -> None:
    supervisor = pool.ensure_pool(UNUSED_URL, home, workers=2, worker_cmd=PARENT)
    workers = list(worker_pids(home).values())
    wait_until(lambda: len(list(home.glob("child-*[0-9]"))) == 2, timeout_s=5)
    children = [int(p.read_text()) for p in home.glob("child-*[0-9]")]

    os.kill(supervisor, signal.SIGTERM)

    assert detached.wait_for_exit(supervisor, 10)
    assert not (home / constants.POOL_STATE_FILE).exists()
    assert not any(detached.process_running(pid) for pid in workers + children)
    assert pool.stop_pool(home) is False


def test_stop_pool_kills_workers_that_ignore_sigterm(home: Path) -> None:
    pool.ensure_pool(UNUSED_URL, home, workers=1, worker_cmd=STUBBORN, kill_after_s=0.5)
    [worker] = worker_pids(home).values()
    wait_until(lambda: (home / f"ready-{worker}").exists(), timeout_s=5)

    assert pool.stop_pool(home)
    assert not detached.process_running(worker)


def test_new_pool_removes_workers_left_by_a_killed_supervisor(home: Path) -> None:
    supervisor = pool.ensure_pool(UNUSED_URL, home, workers=1, worker_cmd=SLEEPER)
    [orphan] = worker_pids(home).values()
    os.kill(supervisor, signal.SIGKILL)
    assert detached.wait_for_exit(supervisor, 5)
    assert detached.process_running(orphan)

    assert pool.ensure_pool(UNUSED_URL, home, workers=1, worker_cmd=SLEEPER) != supervisor
    assert detached.wait_for_exit(orphan, 5)


def test_workers_left_by_a_killed_supervisor_are_drained_and_finish_their_runs(
    home: Path, runtime: Runtime, redis_url: str, r: redis.Redis
) -> None:
    from tests.runtime import rt_apps

    supervisor = pool.ensure_pool(redis_url, home, workers=1)  # real `nbflow worker`s
    [orphan] = worker_pids(home).values()
    run = rt_apps.blocking.submit(redis_url, "orphaned", sleep_s=2.0)
    wait_until(lambda: r.get("started:orphaned"), timeout_s=30)
    os.kill(supervisor, signal.SIGKILL)
    assert detached.wait_for_exit(supervisor, 5)
    assert detached.process_running(orphan)

    replacement = pool.ensure_pool(redis_url, home, workers=1)

    assert replacement != supervisor
    assert not detached.process_running(orphan)
    # Finished by the drained worker in its one attempt, not killed and restarted later.
    assert run.status() == "succeeded"
    assert run.meta().get("restarts", 0) == 0
    assert r.get("started:orphaned") == b"1" and r.get("finished:orphaned") == b"1"
    worker_log = (home / constants.POOL_LOG_DIR / "worker-0.log").read_text()
    assert "draining" in worker_log


# --- cluster helper -------------------------------------------------------------
def test_cluster_helper_serves_keys_in_every_slot_range() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="nbf-"))
    try:
        with start_cluster(tmp) as cluster:
            client = RedisCluster.from_url(cluster.url)
            try:
                keys = [f"key-{n}" for n in range(30)]
                for key in keys:
                    client.set(key, key)
                assert [client.get(key) for key in keys] == [key.encode() for key in keys]
                slots = [key_slot(key.encode()) for key in keys]
                assert all(any(lo <= slot <= hi for slot in slots) for lo, hi in slot_ranges(3))
            finally:
                close_cluster_client(client)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_a_workflow_from_a_module_beside_the_notebook_runs_on_the_embedded_pool(
    tmp_path: Path,
) -> None:
    # The pool's workers start in the nbflow home, where a module beside the notebook is
    # not importable: it travels by value instead, as notebook code does.
    project, home = tmp_path / "project", tmp_path / "home"
    project.mkdir()
    (project / "my_helpers.py").write_text(
        "import nbflow as nf\n\n\n@nf.component\ndef double(x: int) -> int:\n    return x * 2\n\n\n"
        "@nf.workflow\ndef helped(x: int) -> int:\n    return double(x) + 1\n"
    )
    script = (
        "from my_helpers import helped\n"
        "run = helped.submit(20)\n"
        "print('result', run.result(timeout_s=60))\n"
        "print('spans', sorted(run.trace().spans['name']))\n"
    )
    env = {**os.environ, "NBFLOW_HOME": str(home), "PYTHONPATH": str(REPO)}
    env.pop("NBFLOW_REDIS_URL", None)
    env.pop("NBFLOW_SECRET", None)
    try:
        done = subprocess.run(
            [sys.executable, "-c", script],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "result 41" in done.stdout
        assert "spans ['double', 'helped']" in done.stdout
    finally:
        pool.stop_pool(home)
        embedded.stop_server(home)
