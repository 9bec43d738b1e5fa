"""Fault injection over real processes and a real server, and the invariants checked
over every run's log afterwards. Used by tests/chaos (a short seeded set) and by
bench/chaos.py (long runs).

A rig is one embedded Valkey server (append-only persistence, so a kill -9 loses
no acknowledged write) and a few ``nbflow worker`` processes serving
tests/chaos/chaos_apps.py, kept up by the rig as a supervisor would. A trial
submits runs, injects seeded faults while they execute, waits for every run to
end, and checks what the log says against what the ledger saw.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from nbflow import constants as c
from nbflow.runtime import codeship, embedded
from nbflow.runtime.client import Runtime
from nbflow.runtime.doctor import Doctor

from .chaos_apps import expected

ROOT = Path(__file__).resolve().parents[2]
SECRET = b"nbflow-chaos-secret"
TERMINAL_WITHIN_S = 60.0


@dataclass
class Rig:
    home: Path
    workers: int = 3
    lease_ms: int = 1_000
    url: str = ""
    ledger: Path = field(init=False)
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    stopped: set[int] = field(default_factory=set)  # slots under SIGSTOP
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.ledger = self.home / "ledger.log"

    # --- the server -------------------------------------------------------
    def start(self) -> None:
        self.url = embedded.ensure_server(self.home)
        for slot in range(self.workers):
            self.spawn(slot)

    def stop(self) -> None:
        for slot in list(self.procs):
            self.signal(slot, signal.SIGCONT)
            self.signal(slot, signal.SIGKILL)
        for proc in self.procs.values():
            proc.wait(10)
        embedded.stop_server(self.home)

    def kill_server(self) -> None:
        state = json.loads((self.home / c.SERVER_STATE_FILE).read_text())
        os.kill(int(state["pid"]), signal.SIGKILL)
        _wait_dead(int(state["pid"]))

    def restart_server(self) -> None:
        embedded.ensure_server(self.home)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5)

    # --- workers -------------------------------------------------------------
    def spawn(self, slot: int) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": f"{ROOT / 'tests' / 'chaos'}{os.pathsep}{ROOT}",
            "NBFLOW_SECRET": SECRET.decode(),
            "NBFLOW_CHAOS_LEDGER": str(self.ledger),
        }
        cmd = [sys.executable, "-m", "nbflow.cli", "worker", "--redis", self.url]
        cmd += ["--app", "chaos_apps", "--lease-ms", str(self.lease_ms), "--concurrency", "4"]
        cmd += ["--max-restarts", "50", "--drain-timeout", "0.5"]
        log = open(self.home / f"worker-{slot}.log", "ab")  # noqa: SIM115 (the child keeps it)
        with self._lock:
            self.procs[slot] = subprocess.Popen(cmd, env=env, stdout=log, stderr=log)
        log.close()

    def signal(self, slot: int, sig: int) -> None:
        proc = self.procs.get(slot)
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)

    def respawn_dead(self) -> None:
        """What a supervisor does: a worker that exited is started again."""
        for slot, proc in list(self.procs.items()):
            if proc.poll() is not None and slot not in self.stopped:
                self.spawn(slot)


# --- faults -------------------------------------------------------------------
Fault = Callable[[Rig, random.Random], None]


def kill9_worker(rig: Rig, rng: random.Random) -> None:
    rig.signal(rng.randrange(rig.workers), signal.SIGKILL)


def sigterm_worker(rig: Rig, rng: random.Random) -> None:
    rig.signal(rng.randrange(rig.workers), signal.SIGTERM)


def stop_worker_past_its_lease(rig: Rig, rng: random.Random) -> None:
    """A long pause (a GC, a swapped-out VM): the worker resumes after its lease ran out."""
    slot = rng.randrange(rig.workers)
    rig.stopped.add(slot)
    rig.signal(slot, signal.SIGSTOP)

    def resume() -> None:
        rig.signal(slot, signal.SIGCONT)
        rig.stopped.discard(slot)

    threading.Timer(rig.lease_ms / 1000 * rng.uniform(1.5, 3.0), resume).start()


def server_outage_short(rig: Rig, rng: random.Random) -> None:
    rig.kill_server()
    time.sleep(rig.lease_ms / 1000 * rng.uniform(0.1, 0.4))
    rig.restart_server()


def server_outage_long(rig: Rig, rng: random.Random) -> None:
    rig.kill_server()
    time.sleep(rig.lease_ms / 1000 * rng.uniform(1.5, 2.5))
    rig.restart_server()


def kill_client_connections(rig: Rig, rng: random.Random) -> None:
    with rig.client() as client:
        client.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")


FAULTS: dict[str, Fault] = {
    "kill9_worker": kill9_worker,
    "sigterm_worker": sigterm_worker,
    "sigstop_worker": stop_worker_past_its_lease,
    "server_outage_short": server_outage_short,
    "server_outage_long": server_outage_long,
    "client_kill": kill_client_connections,
}


# --- a trial -------------------------------------------------------------------
@dataclass
class TrialReport:
    seed: int
    faults: list[str]
    runs: int
    violations: list[str]
    seconds: float
    reattempts: int = 0  # attempts after the first, over all runs: the faults that hit runs


def trial(rig: Rig, seed: int, *, runs: int = 6, faults: int = 2) -> TrialReport:
    rng = random.Random(seed)
    started = time.monotonic()
    runtime = Runtime(rig.url, secret=SECRET, cluster=False)
    try:
        sizes = {}
        for _ in range(runs):
            n = rng.randint(2, 5)
            run = runtime.start("trial", {"n": n, "sleep_s": round(rng.uniform(0.05, 0.3), 3)})
            sizes[run.id] = n
        injected = []
        for _ in range(faults):
            time.sleep(rng.uniform(0.1, 0.8))
            name = rng.choice(sorted(FAULTS))
            FAULTS[name](rig, rng)
            injected.append(name)
            time.sleep(0.2)
            rig.respawn_dead()
        violations = _wait_terminal(rig, sizes)
        with rig.client() as client:
            violations += check(client, sizes, read_ledger(rig.ledger))
            reattempts = sum(int(client.hget(c.run_meta(r), "attempts") or 1) - 1 for r in sizes)
    finally:
        _close_quietly(runtime)
    seconds = time.monotonic() - started
    return TrialReport(seed, injected, runs, violations, seconds, reattempts)


def _wait_terminal(rig: Rig, sizes: dict[str, int]) -> list[str]:
    deadline = time.monotonic() + TERMINAL_WITHIN_S
    while time.monotonic() < deadline:
        rig.respawn_dead()
        try:
            with rig.client() as client:
                statuses = [client.hget(c.run_meta(r), "status") for r in sizes]
        except redis.RedisError:
            time.sleep(0.2)
            continue
        if all(s is not None and s.decode() in c.TERMINAL_STATUSES for s in statuses):
            return []
        time.sleep(0.1)
    return [f"run {r}: not ended within {TERMINAL_WITHIN_S:g} s" for r in sizes]


def _close_quietly(runtime: Runtime) -> None:
    with contextlib.suppress(redis.RedisError):
        runtime.close()


def read_ledger(path: Path) -> list[tuple[str, int, int]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        run_id, step, attempt, _pid = line.split()
        rows.append((run_id, int(step), int(attempt)))
    return rows


# --- the invariants -------------------------------------------------------------
def check(
    client: redis.Redis, sizes: dict[str, int], ledger: list[tuple[str, int, int]]
) -> list[str]:
    """Every violation of the log's promises, one line each, over these runs."""
    violations = []
    for run_id, n in sizes.items():
        executions = [(step, attempt) for r, step, attempt in ledger if r == run_id]
        violations += [f"run {run_id}: {v}" for v in check_run(client, run_id, n, executions)]
    findings = Doctor(client).examine()
    violations += [f"doctor: {f}" for f in findings if f.kind != "dead_consumer"]
    return violations


def check_run(
    client: redis.Redis, run_id: str, n: int, executions: list[tuple[int, int]]
) -> list[str]:
    raw: Any = client.hgetall(c.run_meta(run_id))
    meta = {k.decode(): v for k, v in raw.items()}
    entries: Any = client.xrange(c.run_log(run_id))
    events = [json.loads(f[b"e"]) for _id, f in entries]
    status = meta.get("status", b"").decode()
    problems = []
    if status != "succeeded":
        problems.append(f"ended {status}: {meta.get('error', b'').decode()}")
    elif codeship.unpack(meta["result"], SECRET, codeship.result_for(run_id)) != expected(n):
        problems.append("wrong result")
    problems += _fencing(events)
    problems += _once(events, n)
    problems += _committed_once(events, executions)
    for key in (c.run_meta(run_id), c.run_log(run_id), c.run_steps(run_id)):
        if client.exists(key) and client.ttl(key) < 0:
            problems.append(f"{key} has no time-to-live")
    return problems


def _fencing(events: list[dict[str, Any]]) -> list[str]:
    """No attempt writes after a newer one started; every span finishes at most once."""
    problems = []
    newest = 0
    for event in events:
        if event["type"] == "run.started":
            newest = max(newest, int(event["attempt"]))
        elif event.get("run_attempt", newest) < newest:
            problems.append(
                f"attempt {event['run_attempt']} wrote {event['type']} after attempt {newest} began"
            )
    finished = Counter(e["span_id"] for e in events if e["type"] == "span.finished")
    problems += [f"span {s} finished {k} times" for s, k in finished.items() if k > 1]
    ends = [e for e in events if e["type"] in ("run.succeeded", "run.failed", "run.cancelled")]
    if len(ends) != 1:
        problems.append(f"{len(ends)} terminal events")
    return problems


def _once(events: list[dict[str, Any]], n: int) -> list[str]:
    """The streamed output and progress marks are those of a run that never restarted."""
    chunks = [e["chunk"] for e in events if e["type"] == "output"]
    want = [f"c{i};" for i in range(n)] + ["end;"]
    problems = [] if chunks == want else [f"output {''.join(chunks)!r}, not {''.join(want)!r}"]
    marks = [e["step"] for e in events if e["type"] == "progress"]
    if marks != [f"step {i}" for i in range(n)]:
        problems.append(f"progress marks {marks}")
    return problems


def _committed_once(events: list[dict[str, Any]], executions: list[tuple[int, int]]) -> list[str]:
    """A committed step is executed by the attempt that committed it, once, and by no later
    attempt (those replay it); earlier attempts may have died before committing."""
    step_of = {
        e["span_id"]: e["input"]["i"]
        for e in events
        if e["type"] == "span.started" and e.get("name") == "work"
    }
    problems = []
    for event in events:
        if event["type"] != "span.finished" or event["span_id"] not in step_of:
            continue
        step, committed_by = step_of[event["span_id"]], event["run_attempt"]
        by_attempt = Counter(a for s, a in executions if s == step)
        if by_attempt[committed_by] != 1:
            problems.append(
                f"step {step} ran {by_attempt[committed_by]} times in the attempt that committed it"
            )
        later = sum(k for a, k in by_attempt.items() if a > committed_by)
        if later:
            problems.append(f"step {step} ran again {later} times after its commit")
    return problems


def _wait_dead(pid: int) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.01)
