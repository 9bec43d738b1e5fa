"""The ``nbflow`` command end to end, as a user runs it: real processes, the embedded runtime."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def nbflow_home() -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="nbf-cli-"))
    yield home
    _nbflow(home, "down")


def _nbflow(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NBFLOW_REDIS_URL", "NBFLOW_SECRET")}
    env.update(NBFLOW_HOME=str(home), PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-m", "nbflow.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.mark.timeout(180)
def test_demo_runs_live_on_the_embedded_runtime_and_the_run_survives_down_and_up(
    nbflow_home,
) -> None:
    demo = _nbflow(nbflow_home, "demo", "--topic", "otters")
    assert "run.succeeded" in demo.stdout
    assert "▶ research" in demo.stdout and "offline model" in demo.stdout
    assert "## " in demo.stdout  # section text streamed as it was written
    assert "LLM calls" in demo.stdout  # token totals of the run
    run_id = demo.stdout.split("submitted run ")[1].split()[0]
    worker_logs = "".join(p.read_text() for p in (nbflow_home / "logs").glob("worker-*.log"))
    assert "serving" in worker_logs  # nbflow's own news
    assert "HTTP Request" not in worker_logs  # not a line per LLM call from the HTTP client

    status = json.loads(_nbflow(nbflow_home, "status", "--json").stdout)
    assert status["server"]["running"] and status["pool"]["running"]
    assert all(w["alive"] for w in status["pool"]["workers"])
    assert status["active_runs"] == 0

    _nbflow(nbflow_home, "down")
    stopped = json.loads(_nbflow(nbflow_home, "status", "--json").stdout)
    assert not stopped["server"]["running"] and not stopped["pool"]["running"]
    told = _nbflow(nbflow_home, "status").stdout
    assert "server   stopped" in told and "nbflow up" in told and "None" not in told
    _nbflow(nbflow_home, "up")

    listed = _nbflow(nbflow_home, "runs").stdout
    assert run_id in listed and "succeeded" in listed
    logs = _nbflow(nbflow_home, "logs", run_id).stdout
    assert "run.succeeded" in logs and "write_section" in logs


def test_logs_of_an_unknown_run_fails_with_a_clear_message(nbflow_home) -> None:
    _nbflow(nbflow_home, "up", "--workers", "1")
    assert "no runs yet" in _nbflow(nbflow_home, "runs").stdout
    done = _nbflow(nbflow_home, "logs", "0123456789abcdef", check=False)
    assert done.returncode != 0
    assert "no run '0123456789abcdef'" in done.stderr
    assert "Traceback" not in done.stderr
