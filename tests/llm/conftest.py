"""Offline model servers shared by the llm tests, and worker processes serving llm_apps."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nbflow.llm.offline import OfflineServer, serve_offline

from ..conftest import TEST_SECRET

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def llm_server() -> Iterator[OfflineServer]:
    with serve_offline() as running:
        yield running


@pytest.fixture(scope="session")
def backup_server() -> Iterator[OfflineServer]:
    """A second provider, for fallbacks."""
    with serve_offline() as running:
        yield running


@pytest.fixture
def server(llm_server: OfflineServer, backup_server: OfflineServer) -> Iterator[OfflineServer]:
    """The offline model with no faults queued and its counters at zero."""
    for s in (llm_server, backup_server):
        s.clear_faults()
        s.reset_stats()
    yield llm_server
    for s in (llm_server, backup_server):
        s.clear_faults()


@pytest.fixture
def llm_worker_process(
    redis_url: str, r: object
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """``nbflow worker`` processes serving tests/llm/llm_apps.py; killed at the end."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(*extra: str) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "PYTHONPATH": f"{ROOT / 'tests' / 'llm'}{os.pathsep}{ROOT}",
            "NBFLOW_SECRET": TEST_SECRET.decode(),
        }
        cmd = [
            sys.executable,
            "-m",
            "nbflow.cli",
            "worker",
            "--redis",
            redis_url,
            "--app",
            "llm_apps",
            "--lease-ms",
            "1000",
            *extra,
        ]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        if proc.stderr:
            proc.stderr.close()
