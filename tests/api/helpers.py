"""Small clients for the API tests: an SSE parser and the API as a separate process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.api.apps_for_tests"
START_TIMEOUT_S = 20.0


@dataclass
class Frame:
    id: str | None = None
    event: str | None = None
    data: Any = None
    comment: str | None = None


def frames(response: httpx.Response) -> Iterator[Frame]:
    """Server-Sent Events as they arrive; comments (keep-alives) too."""
    frame = Frame()
    for line in response.iter_lines():
        if not line:
            if frame != Frame():
                yield frame
            frame = Frame()
        elif line.startswith(":"):
            yield Frame(comment=line[1:].strip())
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                frame.data = json.loads(value)
            elif name in ("id", "event"):
                setattr(frame, name, value)


def events(response: httpx.Response) -> Generator[Frame]:
    return (f for f in frames(response) if f.comment is None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ApiProcess:
    """``nbflow api`` in a process of its own, on loopback."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


def start_api_process(
    redis_url: str,
    secret: bytes,
    log_dir: Path,
    *,
    port: int | None = None,
    extra_env: dict[str, str] | None = None,
) -> ApiProcess:
    port = port or free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "NBFLOW_SECRET": secret.decode(),
        **(extra_env or {}),
    }
    env.pop("NBFLOW_API_TOKEN", None)
    log = log_dir / f"api-{port}-{time.monotonic_ns()}.log"
    cmd = [
        sys.executable,
        "-m",
        "nbflow.cli",
        "api",
        "--redis",
        redis_url,
        "--app",
        APP,
        "--port",
        str(port),
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    api = ApiProcess(proc, port, log)
    _wait_until_up(api)
    return api


def _wait_until_up(api: ApiProcess) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if api.proc.poll() is not None:
            raise RuntimeError(f"nbflow api exited ({api.proc.returncode}):\n{api.log.read_text()}")
        try:
            if httpx.get(f"{api.url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    api.kill()
    raise TimeoutError(f"nbflow api did not answer in {START_TIMEOUT_S} s:\n{api.log.read_text()}")
