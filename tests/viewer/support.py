"""Helpers for the viewer tests: worker and run-starter processes, SSE parsing."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
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


def start_lab(
    base: Path, lab_env: dict[str, str], *, timeout_s: float = 60.0
) -> tuple[str, str, subprocess.Popen[bytes]]:
    """``jupyter lab`` in its own process under ``base``, with nbflow's server extension,
    the built front end and no news pop-ups: (url, token, process), once it serves.
    The tests' ``lab`` fixture and ``bench/viewer.py`` both start it here."""
    (base / "share" / "labextensions").mkdir(parents=True)
    (base / "share" / "labextensions" / "nbflow").symlink_to(LABEXTENSION)
    (base / "config").mkdir()
    extensions = {"ServerApp": {"jpserver_extensions": {"nbflow.jupyter.server": True}}}
    (base / "config" / "jupyter_server_config.json").write_text(json.dumps(extensions))
    (base / "root").mkdir()
    # No news or update pop-ups over the views (the screenshots are the README's).
    notification = base / "settings" / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True)
    quiet = {"fetchNews": "false", "checkForUpdates": False}
    (notification / "notification.jupyterlab-settings").write_text(json.dumps(quiet))
    port, token = free_port(), secrets.token_hex(16)
    cmd = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}", f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={base / 'root'}", f"--LabApp.workspaces_dir={base / 'ws'}",
        f"--LabApp.user_settings_dir={base / 'settings'}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--allow-root",
        # window.jupyterapp, for running commands (save, open, Notebook 7's side panel)
        "--LabApp.expose_app_in_browser=True", "--JupyterNotebookApp.expose_app_in_browser=True",
    ]  # fmt: skip
    full_env = {
        **lab_env,
        "JUPYTER_PATH": str(base / "share"),
        "JUPYTER_CONFIG_DIR": str(base / "config"),
    }
    log = base / "lab.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=full_env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while not _serving(f"{url}/api/status?token={token}"):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process(proc)
            raise RuntimeError(f"jupyter lab did not start:\n{log.read_text()}")
        time.sleep(0.2)
    return url, token, proc


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _serving(status_url: str) -> bool:
    try:
        return httpx.get(status_url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


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


def write_log(
    r: redis.Redis,
    run_id: str,
    events: list[dict[str, Any]],
    *,
    status: str,
    workflow: str = "written",
) -> None:
    """A run's log and metadata written straight into Redis, as its worker would have."""
    from nbflow import constants as c
    from nbflow.runtime.protocol import encode_event

    now = time.time()
    meta: dict[Any, Any] = {  # redis-py types a mapping as keyed by bytes or str
        "run_id": run_id,
        "workflow": workflow,
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
