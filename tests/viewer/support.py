"""Helpers for the viewer tests: worker and run-starter processes, SSE parsing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.viewer.viewer_apps"
LABEXTENSION = ROOT / "nbflow" / "labextension"


def env(redis_url: str, secret: bytes) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "NBFLOW_REDIS_URL": redis_url,
        "NBFLOW_SECRET": secret.decode(),
    }


def start_worker(redis_url: str, secret: bytes) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "nbflow.cli", "worker", "--redis", redis_url, "--app", APP]
    return subprocess.Popen(cmd, env=env(redis_url, secret), stdout=subprocess.DEVNULL)


def start_run_elsewhere(redis_url: str, secret: bytes, name: str, **kwargs: Any) -> str:
    """Start a run from another process (as a notebook or the CLI would); its id."""
    code = (
        "import json, sys\n"
        "from nbflow.runtime.client import Runtime\n"
        f"runtime = Runtime({redis_url!r})\n"
        f"run = runtime.start({name!r}, json.loads(sys.argv[1]), notebook='other.ipynb')\n"
        "print(run.id)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(kwargs)],
        env=env(redis_url, secret),
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return out.stdout.strip()


def wait_status(r: redis.Redis, run_id: str, statuses: set[str], timeout_s: float = 30) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        raw = r.hget(f"nbflow:{{{run_id}}}:meta", "status")
        status = raw.decode() if isinstance(raw, bytes) else ""
        if status in statuses:
            return status
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} never reached {statuses}")


def write_log(r: redis.Redis, run_id: str, events: list[dict[str, Any]], *, status: str) -> None:
    """A run's log and metadata written straight into Redis, as its worker would have."""
    from nbflow import constants as c
    from nbflow.runtime.protocol import encode_event

    now = time.time()
    meta: dict[Any, Any] = {  # redis-py types a mapping as keyed by bytes or str
        "run_id": run_id,
        "workflow": "written",
        "status": status,
        "created_at": repr(now),
    }
    pipe = r.pipeline(transaction=False)
    pipe.hset(c.run_meta(run_id), mapping={**meta, "started_at": repr(now)})
    pipe.zadd(c.RUNS_INDEX, {run_id: now})
    for n, event in enumerate(events):
        pipe.xadd(c.run_log(run_id), {"e": encode_event(event)})
        if n % 5_000 == 4_999:
            pipe.execute()
    pipe.execute()


def sse_events(text: str) -> list[dict[str, Any]]:
    events = []
    for frame in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in frame.splitlines() if ": " in line)
        if "data" in fields:
            event = json.loads(fields["data"])
            assert event["id"] == fields["id"]
            events.append(event)
    return events
