"""Shared helpers for the runtime benchmarks: servers, worker processes, tables.

Every benchmark owns what it starts: a server (the embedded Valkey in a fresh
``NBFLOW_HOME``, or a TCP Valkey node on a loopback port for peer comparisons)
and worker processes, each in its own process group. ``Bench`` is a context
manager that stops all of them on exit, even on error or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
SECRET = "nbflow-bench-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    parts = [str(BENCH_DIR), str(REPO_ROOT)]
    if env.get("PYTHONPATH"):
        parts.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(parts)
    env["NBFLOW_SECRET"] = SECRET
    env.pop("NBFLOW_REDIS_URL", None)
    env.update(extra)
    return env


class Bench:
    """A server plus the processes started against it; everything stopped on exit.

    ``tcp=True`` starts a Valkey node on a loopback TCP port (Celery and RQ need
    TCP URLs); otherwise the embedded unix-socket server in a temp home.
    ``url`` uses an existing server instead (it is never flushed or stopped).
    """

    def __init__(self, *, url: str | None = None, tcp: bool = False) -> None:
        self.given_url = url
        self.tcp = tcp
        self.home: str | None = None
        self.node: subprocess.Popen[bytes] | None = None
        self.procs: list[subprocess.Popen[bytes]] = []
        self.url = ""

    # --- server ------------------------------------------------------------
    def __enter__(self) -> Bench:
        os.environ["NBFLOW_SECRET"] = SECRET
        self.home = tempfile.mkdtemp(prefix="nbf-b-")
        os.environ["NBFLOW_HOME"] = self.home
        try:
            if self.given_url:
                self.url = self.given_url
            elif self.tcp:
                self.url = self._start_tcp_node()
            else:
                from nbflow.runtime import embedded

                self.url = embedded.ensure_server(self.home)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start_tcp_node(self) -> str:
        from nbflow import constants as c
        from nbflow.runtime import embedded

        assert self.home is not None
        port = free_port()
        node_dir = Path(self.home) / "tcp-node"
        node_dir.mkdir()
        config = node_dir / "valkey.conf"
        embedded.write_config(
            config,
            {
                "port": str(port),
                "bind": "127.0.0.1",
                "dir": str(node_dir),
                "save": "",
                "appendonly": "no",
                "logfile": str(node_dir / "valkey.log"),
                # as on the embedded server (see nbflow.constants)
                "stream-node-max-bytes": str(c.STREAM_NODE_MAX_BYTES),
            },
        )
        self.node = subprocess.Popen(
            [str(embedded.valkey_binary()), str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if redis.Redis.from_url(url, socket_timeout=0.5).ping():
                    return url
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError("TCP valkey node did not answer PING")

    def owned(self) -> bool:
        return self.given_url is None

    def flush(self) -> None:
        """Empty the server between sections (only a server this bench started)."""
        if self.owned():
            r = redis.Redis.from_url(self.url)
            r.flushall()
            r.close()

    def __exit__(self, *exc: Any) -> None:
        self.stop_all()
        if self.node is not None:
            _stop_group(self.node, 3.0)
        if self.home is not None:
            if self.owned() and not self.tcp:
                try:
                    from nbflow.runtime import embedded

                    embedded.stop_server(self.home)
                except Exception as error:
                    print(f"warning: stopping the embedded server: {error}", file=sys.stderr)
            shutil.rmtree(self.home, ignore_errors=True)

    # --- processes -----------------------------------------------------------
    def spawn(self, argv: list[str], **env: str) -> subprocess.Popen[bytes]:
        assert self.home is not None
        log = open(Path(self.home) / f"proc-{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            argv,
            env=child_env(NBFLOW_HOME=self.home, **env),
            cwd=str(BENCH_DIR),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def log_of(self, proc: subprocess.Popen[bytes]) -> str:
        assert self.home is not None
        path = Path(self.home) / f"proc-{self.procs.index(proc)}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def nbflow_workers(
        self,
        n: int,
        *,
        concurrency: int | None = None,
        lease_ms: int | None = None,
        app: str = "bench_apps",
        url: str | None = None,
    ) -> list[subprocess.Popen[bytes]]:
        """``n`` worker processes on this bench's server (or ``url``), once all registered."""
        url = url or self.url
        argv = [sys.executable, "-m", "nbflow.cli", "worker", "--redis", url, "--app", app]
        if concurrency is not None:  # else nbflow's default
            argv += ["--concurrency", str(concurrency)]
        if lease_ms is not None:
            argv += ["--lease-ms", str(lease_ms)]
        procs = [self.spawn(argv) for _ in range(n)]
        self.wait_nbflow_workers(n, procs, url=url)
        return procs

    def wait_nbflow_workers(
        self,
        n: int,
        procs: list[subprocess.Popen[bytes]],
        timeout_s: float = 30,
        *,
        url: str | None = None,
    ) -> None:
        from nbflow import constants as c
        from nbflow.runtime.connection import sync_client

        r = sync_client(url or self.url)
        pids = {str(p.pid) for p in procs}
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                for p in procs:
                    if p.poll() is not None:
                        raise RuntimeError(
                            f"worker {p.pid} exited {p.returncode}:\n{self.log_of(p)}"
                        )
                live = {w.decode().split(":")[1] for w in r.zrange(c.WORKERS, 0, -1)}
                if len(pids & live) >= n:
                    return
                time.sleep(0.05)
        finally:
            r.close()
        raise RuntimeError(f"{n} nbflow workers did not register within {timeout_s} s")

    def stop(self, proc: subprocess.Popen[bytes], timeout_s: float = 5.0) -> None:
        _stop_group(proc, timeout_s)

    def stop_all(self) -> None:
        for proc in self.procs:
            _stop_group(proc, 5.0)


def _stop_group(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGTERM the process group we started, then SIGKILL it if it lingers."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout_s)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers in the group (forked children)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(2)


class Rounds:
    """What failed over a benchmark's rounds, each line tagged with its round."""

    def __init__(self) -> None:
        self.failures: list[str] = []
        self.round = 0

    def next_round(self, total: int) -> None:
        self.round += 1
        print(f"round {self.round}/{total}", flush=True)

    def fail(self, line: str) -> None:
        print(line, flush=True)
        prefix = f"round {self.round}: " if self.round else ""
        self.failures.append(prefix + line.strip())


# --- figures -------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    cells = [[_fmt(v) for v in row] for row in rows]
    numeric = [all(isinstance(r[i], (int, float)) for r in rows) for i in range(len(header))]
    widths = [
        max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(header)
    ]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print(
            "  ".join(
                v.rjust(w) if numeric[i] else v.ljust(w)
                for i, (v, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    sys.stdout.flush()


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if v != v:
            return "-"
        if abs(v) >= 100:
            return f"{v:,.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.2f}"
    return str(v)


def machine() -> str:
    import platform

    python = f"{platform.python_implementation()} {platform.python_version()}"
    return f"{python}, {os.cpu_count()} CPUs, {platform.system()}"
