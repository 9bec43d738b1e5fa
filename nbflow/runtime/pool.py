"""The local worker pool of the embedded default: a detached supervisor that keeps N workers up.

``ensure_pool`` starts ``python -m nbflow.runtime.pool`` once per nbflow home. The supervisor
starts each worker in its own process group, restarts one that dies (at most once per
``POOL_RESTART_INTERVAL_S`` per slot, so a crash loop does not spin), keeps
``<home>/pool.json`` current, and on SIGTERM passes the signal on, waits for the workers to
drain, kills what is left and exits 0. A pool of another nbflow version (one that outlived an
upgrade) is drained and replaced by the first process that needs it; so are the workers of a
supervisor that died (killed, or out of memory), which go on running without it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from nbflow import constants
from nbflow._version import __version__ as NBFLOW_VERSION
from nbflow.errors import ConfigError, RuntimeUnavailable
from nbflow.runtime.detached import (
    locked,
    log_tail,
    process_running,
    read_json,
    spawn_detached,
    wait_for_exit,
    write_json,
)
from nbflow.runtime.embedded import resolve_home

_SUPERVISOR_MODULE = "nbflow.runtime.pool"
_TICK_S = 0.1
_KILL_AFTER_S = constants.DRAIN_TIMEOUT_S + constants.POOL_KILL_MARGIN_S
# The directory holding the nbflow package, so the supervisor and its workers import this
# very copy of nbflow, even from a source checkout that is not installed.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])

log = logging.getLogger(__name__)


# --- the client side ----------------------------------------------------------
def ensure_pool(
    url: str,
    home: Path | str | None = None,
    *,
    workers: int = constants.EMBEDDED_WORKERS,
    worker_cmd: Sequence[str] | None = None,
    kill_after_s: float = _KILL_AFTER_S,
) -> int:
    """Start this home's worker pool for ``url`` unless it already runs; return the supervisor pid.

    ``worker_cmd`` (or the JSON list in ``$NBFLOW_WORKER_CMD``) replaces the worker command;
    ``kill_after_s`` is how long workers may drain after SIGTERM before they are killed.
    """
    if workers < 1:
        raise ConfigError(f"a worker pool needs at least one worker, not {workers}")
    root = resolve_home(home)
    with locked(root / constants.POOL_LOCK_FILE):
        state = read_json(root / constants.POOL_STATE_FILE)
        if state is not None:
            if _supervisor_running(state) and state.get("url") == url:
                if state.get("nbflow") == NBFLOW_VERSION:
                    return int(state["supervisor"])
                log.warning(
                    "replacing the worker pool of nbflow %s with one of nbflow %s; "
                    "its runs are handed back and go on in the new one",
                    state.get("nbflow", "(version not recorded)"),
                    NBFLOW_VERSION,
                )
            _retire(root, state, timeout_s=None)  # another server's or version's, or dead
        return _start_supervisor(root, url, workers, worker_cmd, kill_after_s)


def stop_pool(home: Path | str | None = None, timeout_s: float | None = None) -> bool:
    """Stop this home's pool and all its workers. False if no supervisor was running.

    By default waits for the supervisor's own drain time plus a margin before killing it.
    """
    root = resolve_home(home)
    with locked(root / constants.POOL_LOCK_FILE):
        state = read_json(root / constants.POOL_STATE_FILE)
        if state is None:
            return False
        was_running = _supervisor_running(state)
        _retire(root, state, timeout_s=timeout_s)
        return was_running


def pool_status(home: Path | str | None = None) -> dict[str, Any]:
    root = resolve_home(home)
    state = read_json(root / constants.POOL_STATE_FILE) or {}
    workers = [
        {"slot": worker["slot"], "pid": worker["pid"], "alive": process_running(worker["pid"])}
        for worker in state.get("workers", [])
    ]
    return {
        "home": str(root),
        "supervisor_pid": state.get("supervisor"),
        "running": _supervisor_running(state),
        "url": state.get("url"),
        "workers": workers,
    }


def worker_command(url: str, worker_cmd: Sequence[str] | None = None) -> list[str]:
    if worker_cmd is not None:
        return list(worker_cmd)
    override = os.environ.get(constants.ENV_WORKER_CMD)
    if not override:
        return [sys.executable, "-m", "nbflow.cli", "worker", "--redis", url]
    command = json.loads(override)
    if not (isinstance(command, list) and command and all(isinstance(a, str) for a in command)):
        raise ConfigError(
            f"${constants.ENV_WORKER_CMD} must be a JSON list of strings, not {override!r}"
        )
    return command


def _supervisor_running(state: Mapping[str, Any]) -> bool:
    pid = state.get("supervisor")
    return isinstance(pid, int) and process_running(pid, _SUPERVISOR_MODULE)


def _start_supervisor(
    root: Path, url: str, workers: int, worker_cmd: Sequence[str] | None, kill_after_s: float
) -> int:
    logs = root / constants.POOL_LOG_DIR
    logs.mkdir(mode=0o700, exist_ok=True)
    argv = [sys.executable, "-m", _SUPERVISOR_MODULE, "--redis", url, "--workers", str(workers)]
    argv += ["--home", str(root), "--kill-after-s", str(kill_after_s)]
    if worker_cmd is not None:
        argv += ["--worker-cmd", json.dumps(list(worker_cmd))]
    pid = spawn_detached(argv, log_path=logs / "pool.log", cwd=root, env=supervisor_env())
    _wait_for_supervisor(root, pid)
    return pid


def supervisor_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_ROOT, env.get("PYTHONPATH")]))
    return env


def _wait_for_supervisor(root: Path, pid: int) -> None:
    pool_log = root / constants.POOL_LOG_DIR / "pool.log"
    deadline = time.monotonic() + constants.POOL_START_TIMEOUT_S
    while time.monotonic() < deadline:
        state = read_json(root / constants.POOL_STATE_FILE)
        if state is not None and state.get("supervisor") == pid:
            return
        if not process_running(pid):
            raise RuntimeUnavailable(
                f"the worker pool supervisor exited while starting.\n{log_tail(pool_log)}"
            )
        time.sleep(_TICK_S)
    _retire(root, {"supervisor": pid}, timeout_s=1.0)
    raise RuntimeUnavailable(
        f"the worker pool supervisor did not start in time.\n{log_tail(pool_log)}"
    )


def _retire(root: Path, state: Mapping[str, Any], *, timeout_s: float | None) -> None:
    budget_s = timeout_s if timeout_s is not None else _drain_budget_s(state)
    deadline = time.monotonic() + budget_s
    if _supervisor_running(state):
        pid = int(state["supervisor"])
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not wait_for_exit(pid, budget_s):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            wait_for_exit(pid, 1.0)
    # A supervisor that died (or was killed) could not take its workers down: drain them
    # here, from the newest record of them, within what is left of the budget.
    _drain_leftover_workers(read_json(root / constants.POOL_STATE_FILE) or state, deadline)
    (root / constants.POOL_STATE_FILE).unlink(missing_ok=True)


def _drain_budget_s(state: Mapping[str, Any]) -> float:
    kill_after_s = state.get("kill_after_s", _KILL_AFTER_S)
    return float(kill_after_s) + constants.POOL_KILL_MARGIN_S


def _drain_leftover_workers(state: Mapping[str, Any], deadline: float) -> None:
    """SIGTERM the workers a dead supervisor left: their runs finish or are handed back
    as in any drain; what is still alive at ``deadline`` is killed."""
    left = _leftover_workers(state)
    remaining_s = deadline - time.monotonic()
    if left and remaining_s > 0:
        log.warning(
            "the worker pool's supervisor is gone but %d of its workers still run: draining "
            "them (up to %.0f s) before a new pool starts",
            len(left),
            remaining_s,
        )
        _signal_groups(left, signal.SIGTERM)
        for pid in left:
            wait_for_exit(pid, max(0.0, deadline - time.monotonic()))
    _signal_groups(_leftover_workers(state), signal.SIGKILL)


def _leftover_workers(state: Mapping[str, Any]) -> list[int]:
    # Matching the recorded command line keeps a recycled pid of some other process safe.
    command = " ".join(state.get("cmd", []))
    pids = [int(worker["pid"]) for worker in state.get("workers", [])]
    return [pid for pid in pids if command and process_running(pid, command)]


def _signal_groups(pids: Sequence[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signum)


# --- the supervisor -----------------------------------------------------------
@dataclass
class _Slot:
    index: int
    command: list[str]
    log_path: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = -math.inf

    def is_down(self) -> bool:
        return self.proc is None or self.proc.poll() is not None

    def may_restart(self, now: float) -> bool:
        return now - self.started_at >= constants.POOL_RESTART_INTERVAL_S

    def start(self) -> None:
        self.started_at = time.monotonic()
        with self.log_path.open("ab") as out:
            try:
                # Its own process group, so that signals reach anything the worker starts too.
                self.proc = subprocess.Popen(
                    self.command,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    env=self.env,
                    process_group=0,
                )
            except OSError as error:
                log.error("worker %d could not start: %s", self.index, error)
                self.proc = None
                return
        log.info("worker %d started, pid %d", self.index, self.proc.pid)

    def restart(self) -> None:
        if self.proc is not None:
            log.warning(
                "worker %d (pid %d) exited with %s", self.index, self.proc.pid, self.proc.returncode
            )
            self.signal(signal.SIGKILL)  # whatever the dead worker left in its group
        self.start()

    def signal(self, signum: int) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signum)

    def wait(self, deadline: float) -> None:
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=max(0.0, deadline - time.monotonic()))


@dataclass
class _Supervisor:
    root: Path
    url: str
    command: list[str]
    kill_after_s: float
    slots: list[_Slot] = field(default_factory=list)
    stopping: bool = False

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        log.info("supervisor %d for %s with %d workers", os.getpid(), self.url, len(self.slots))
        try:
            while not self.stopping:
                if self._tend():
                    self._publish()
                time.sleep(_TICK_S)
        finally:  # even after an unexpected error, no worker outlives its supervisor
            self._drain()
            (self.root / constants.POOL_STATE_FILE).unlink(missing_ok=True)
        log.info("supervisor %d stopped", os.getpid())
        return 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def _tend(self) -> bool:
        now = time.monotonic()
        due = [slot for slot in self.slots if slot.is_down() and slot.may_restart(now)]
        for slot in due:
            slot.restart()
        return bool(due)

    def _publish(self) -> None:
        workers = [{"slot": s.index, "pid": s.proc.pid} for s in self.slots if s.proc is not None]
        write_json(
            self.root / constants.POOL_STATE_FILE,
            {
                "supervisor": os.getpid(),
                "nbflow": NBFLOW_VERSION,
                "url": self.url,
                "cmd": self.command,
                "kill_after_s": self.kill_after_s,
                "workers": workers,
            },
        )

    def _drain(self) -> None:
        for slot in self.slots:
            slot.signal(signal.SIGTERM)
        deadline = time.monotonic() + self.kill_after_s
        for slot in self.slots:
            slot.wait(deadline)
        # Stragglers, and whatever a worker left behind in its group, go now.
        for slot in self.slots:
            slot.signal(signal.SIGKILL)
            slot.wait(time.monotonic() + 5.0)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m {_SUPERVISOR_MODULE}")
    parser.add_argument("--redis", required=True, help="redis url the workers connect to")
    parser.add_argument("--workers", type=int, default=constants.EMBEDDED_WORKERS)
    parser.add_argument("--home", required=True, help="nbflow home: pool.json and logs/ go here")
    parser.add_argument(
        "--worker-cmd", type=json.loads, default=None, help="worker command, a JSON list"
    )
    parser.add_argument("--kill-after-s", type=float, default=_KILL_AFTER_S)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s pool %(levelname)s %(message)s")
    root = resolve_home(args.home)
    command = worker_command(args.redis, args.worker_cmd)
    env = {**os.environ, constants.ENV_HOME: str(root), constants.ENV_REDIS_URL: args.redis}
    logs = root / constants.POOL_LOG_DIR
    logs.mkdir(mode=0o700, exist_ok=True)
    slots = [_Slot(n, command, logs / f"worker-{n}.log", env) for n in range(args.workers)]
    return _Supervisor(root, args.redis, command, args.kill_after_s, slots).run()


if __name__ == "__main__":
    sys.exit(main())
