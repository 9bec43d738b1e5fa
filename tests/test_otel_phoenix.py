"""OpenTelemetry export checked against a real Phoenix server, read back through Phoenix's client.

``arize-phoenix`` brings some 150 packages (and pins versions nbflow does not), so
it lives in a virtualenv of its own, made once per checkout under pytest's cache
directory from pip's index and cache; the server runs from it on free ports with
a temporary working directory, and so does Phoenix's own client, which prints
what it reads as JSON. If the package cannot be installed here, the tests skip
and say why.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import nbflow as nf
from nbflow.llm.offline import serve_offline
from nbflow.otel._spans import span_id_of

from .test_otel import MODEL, research_workflow

PHOENIX = "arize-phoenix==20.26.1"
PROJECT = "nbflow-tests"
INSTALL_TIMEOUT_S = 900
START_TIMEOUT_S = 120
READ_TIMEOUT_S = 60

pytestmark = [pytest.mark.slow, pytest.mark.timeout(INSTALL_TIMEOUT_S + 300)]

# Run by the Phoenix virtualenv's Python: the spans of one trace once ``count`` are stored
# (Phoenix stores what it receives a moment later), attributes flattened.
READ_SPANS = r"""
import json, sys, time
import httpx
from phoenix.client import Client

def flat(value, prefix=""):
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            out.update(flat(item, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: value}

url, project, trace_id, count, timeout_s = sys.argv[1:6]
client = Client(base_url=url)
deadline = time.monotonic() + float(timeout_s)
spans = []
while time.monotonic() < deadline:
    try:
        spans = client.spans.get_spans(
            project_identifier=project, trace_ids=[trace_id], limit=1000
        )
    except httpx.HTTPStatusError:  # the project does not exist before its first span
        spans = []
    if len(spans) >= int(count):
        break
    time.sleep(0.2)
for span in spans:
    span["attributes"] = flat(span.get("attributes") or {})
print(json.dumps(spans))
"""


@pytest.fixture(scope="session")
def phoenix_python(request: pytest.FixtureRequest) -> Path:
    """The Python of a virtualenv with ``PHOENIX`` installed, made on first use."""
    home = Path(request.config.cache.mkdir("nbflow-phoenix"))
    python = home / "venv" / "bin" / "python"
    marker = home / "installed.txt"
    if python.exists() and marker.exists() and marker.read_text() == PHOENIX:
        return python
    shutil.rmtree(home / "venv", ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(home / "venv")], check=True, timeout=120)
    try:
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", PHOENIX],
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        pytest.skip(f"{PHOENIX} did not install within {INSTALL_TIMEOUT_S} s")
    if done.returncode != 0:
        pytest.skip(f"{PHOENIX} cannot be installed here: {done.stderr.strip()[-600:]}")
    marker.write_text(PHOENIX)
    return python


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def phoenix(phoenix_python: Path) -> Iterator[str]:
    """A Phoenix server on free ports with a temporary working directory; its URL."""
    workdir = Path(tempfile.mkdtemp(prefix="nbf-phoenix-"))
    port = free_port()
    env = {
        **os.environ,
        "PHOENIX_WORKING_DIR": str(workdir),
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(free_port()),
        "PHOENIX_TELEMETRY_ENABLED": "false",
    }
    log = (workdir / "server.log").open("wb")
    server = subprocess.Popen(
        [str(phoenix_python.parent / "phoenix"), "serve"],
        env=env,
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, server, workdir / "server.log")
        yield url
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


def wait_healthy(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert server.poll() is None, f"Phoenix exited: {log.read_text()[-2000:]}"
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"Phoenix not up within {START_TIMEOUT_S} s: {log.read_text()[-2000:]}")


def read_spans(python: Path, url: str, trace_id: str, count: int) -> list[dict[str, Any]]:
    """The trace's spans as Phoenix's client reads them, once ``count`` have been stored."""
    args = [url, PROJECT, trace_id, str(count), str(READ_TIMEOUT_S)]
    done = subprocess.run(
        [str(python), "-c", READ_SPANS, *args],
        capture_output=True,
        text=True,
        timeout=READ_TIMEOUT_S + 60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found: list[dict[str, Any]] = json.loads(done.stdout)
    assert len(found) >= count, f"Phoenix holds {len(found)} of {count} spans of {trace_id}"
    return found


def test_a_run_lands_in_phoenix_with_its_tree_tokens_and_models(
    phoenix: str, phoenix_python: Path
) -> None:
    with serve_offline() as server:
        research_workflow(server.base_url)("Lisbon")
    trace = nf.last_run().trace()
    state = trace.state
    trace_id = trace.to_otel(phoenix, project=PROJECT)
    spans = read_spans(phoenix_python, phoenix, trace_id, len(state.spans))
    assert len(spans) == len(state.spans)
    got = {span["context"]["span_id"]: span for span in spans}
    for mine in state.spans.values():
        span = got[f"{span_id_of(trace.run_id, mine.span_id):016x}"]
        parent = state.spans.get(mine.parent_id or "")
        want_parent = None if parent is None else f"{span_id_of(trace.run_id, parent.span_id):016x}"
        assert span.get("parent_id") == want_parent, mine.name
        assert span["name"] == mine.name
        assert span["context"]["trace_id"] == trace_id
    kinds = sorted(span["span_kind"] for span in spans)
    assert kinds == ["CHAIN"] * 5 + ["LLM"] * 3 + ["TOOL"]
    llm = [s for s in spans if s["span_kind"] == "LLM"]
    expected = sorted(
        (s.input_tokens, s.output_tokens) for s in state.spans.values() if s.kind == "llm"
    )
    assert (
        sorted(
            (
                s["attributes"]["llm.token_count.prompt"],
                s["attributes"]["llm.token_count.completion"],
            )
            for s in llm
        )
        == expected
    )
    assert {s["attributes"]["llm.model_name"] for s in llm} == {MODEL}
    assert all(
        s["attributes"]["llm.token_count.total"]
        == s["attributes"]["llm.token_count.prompt"] + s["attributes"]["llm.token_count.completion"]
        for s in llm
    )
    statuses = {s["name"]: s["status_code"] for s in spans}
    assert statuses["shaky"] == "ERROR" and statuses["research"] == "OK"
    (failed,) = [s for s in spans if s["name"] == "shaky"]
    assert [e["name"] for e in failed.get("events", [])] == ["exception"]


def test_sending_a_run_again_keeps_one_copy_in_phoenix(phoenix: str, phoenix_python: Path) -> None:
    @nf.component
    def step(x: int) -> int:
        return x + 1

    @nf.workflow
    def twice(x: int) -> int:
        return step(step(x))

    twice(1)
    trace = nf.last_run().trace()
    trace_id = trace.to_otel(phoenix, project=PROJECT)
    read_spans(phoenix_python, phoenix, trace_id, 3)
    assert trace.to_otel(phoenix, project=PROJECT) == trace_id
    time.sleep(2)  # time for Phoenix to store a second copy, were it to keep one
    assert len(read_spans(phoenix_python, phoenix, trace_id, 3)) == 3
