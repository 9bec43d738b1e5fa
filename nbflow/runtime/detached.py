"""Detached processes and the small files that record them, for the embedded server and pool.

A detached process is started through a short-lived launcher, so it is nobody's
child: it outlives the kernel or shell that started it, and a kernel restart
(which signals the kernel's process group) does not reach it. Its pid is
recorded in a JSON file written atomically; an flock makes starting and
stopping one-at-a-time.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from nbflow.errors import RuntimeUnavailable

POLL_S = 0.05

# Runs in a short-lived intermediate process. Its child is re-parented away from us when it
# exits, so a detached server is never our child: no zombie in a long-lived kernel and no
# Popen object that warns about a process still running.
_LAUNCHER = """\
import os, subprocess, sys
with open(sys.argv[1], "ab") as log:
    child = subprocess.Popen(
        sys.argv[3:], cwd=sys.argv[2], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        start_new_session=True,
    )
sys.stdout.write(str(child.pid))
sys.stdout.flush()
os._exit(0)
"""


def spawn_detached(
    argv: Sequence[str], *, log_path: Path, cwd: Path, env: Mapping[str, str] | None = None
) -> int:
    """Start ``argv`` in a new session with output appended to ``log_path``; return its pid.

    The process is not our child: it survives us, and our exit or kernel restart (which
    signals the kernel's process group) does not reach it.
    """
    done = subprocess.run(
        [sys.executable, "-I", "-c", _LAUNCHER, str(log_path), str(cwd), *argv],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=None if env is None else dict(env),
        timeout=30,
        check=False,
    )
    if done.returncode != 0 or not done.stdout.strip().isdigit():
        raise RuntimeUnavailable(f"could not start {argv[0]}: {done.stderr.strip()}")
    return int(done.stdout)


def process_running(pid: int, mark: str | None = None) -> bool:
    """Whether ``pid`` is a live process of this user whose command line contains ``mark``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # another user's process has taken the recorded pid
    described = _describe(pid)
    if described is None:
        return False
    state, command = described
    # Orphans are re-parented to pid 1, which in some containers never reaps them: a zombie
    # answers kill(0) but is gone.
    return not state.startswith("Z") and (mark is None or mark in command)


def _describe(pid: int) -> tuple[str, str] | None:
    proc = Path(f"/proc/{pid}")
    if Path("/proc/self").exists():
        try:
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return None
        return state, command
    done = subprocess.run(
        ["ps", "-ww", "-o", "stat=", "-o", "command=", "-p", str(pid)],
        capture_output=True,
        text=True,
        check=False,
    )
    fields = done.stdout.strip().split(None, 1)
    return (fields[0], fields[1] if len(fields) > 1 else "") if fields else None


def wait_for_exit(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while process_running(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)
    return True


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    # Readers never see a half-written file: write beside it, then rename over it.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        with path.open("rb") as handle:
            # Logs are never rotated; only their end matters here.
            handle.seek(max(0, path.stat().st_size - 16_384))
            text = handle.read().decode(errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    tail = "\n".join(text.splitlines()[-lines:])
    return f"last lines of {path}:\n{tail}" if tail else f"({path} is empty)"
