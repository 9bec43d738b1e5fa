"""Offline model servers shared by the llm tests, and worker processes serving llm_apps."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator

import pytest

from nbflow.llm.offline import OfflineServer, serve_offline

from ..conftest import ROOT, spawn_worker, stop_workers


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
        procs.append(spawn_worker(redis_url, "llm_apps", *extra, app_dir=ROOT / "tests" / "llm"))
        return procs[-1]

    yield start
    stop_workers(procs)
