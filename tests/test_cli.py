"""The ``nbflow`` command end to end, as a user runs it: real processes, the embedded runtime."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from nbflow._version import __version__
from nbflow.cli import build_parser

from .api.helpers import Frame, events, free_port

ROOT = Path(__file__).resolve().parents[1]
# A workflow that naps, in a module beside the script that submits it (it travels by value).
NAPPER = """
import time
import nbflow as nf

@nf.workflow
def nap(seconds: float) -> str:
    time.sleep(seconds)
    return "rested"
"""


@pytest.fixture
def nbflow_home() -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="nbf-cli-"))
    yield home
    _nbflow(home, "down")


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NBFLOW_REDIS_URL", "NBFLOW_SECRET")}
    env.update(NBFLOW_HOME=str(home), PYTHONPATH=str(ROOT))
    return env


def _nbflow(
    home: Path, *args: str, check: bool = True, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "nbflow.cli", *args],
        env=_env(home),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=90,
    )
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def _python(home: Path, code: str, *, cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=_env(home),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _server_started(home: Path) -> bool:
    return (home / "server.json").exists()


@pytest.mark.timeout(180)
def test_demo_runs_live_on_the_embedded_runtime_and_the_run_survives_down_and_up(
    nbflow_home,
) -> None:
    demo = _nbflow(nbflow_home, "demo", "--topic", "otters")
    assert "run.succeeded" in demo.stdout
    assert "▶ research" in demo.stdout and "offline model" in demo.stdout
    assert "## " in demo.stdout  # section text streamed as it was written
    assert "LLM calls" in demo.stdout  # token totals of the run
    assert demo.stdout.rstrip().endswith(
        "The embedded runtime keeps running in the background (shared by your notebooks and "
        "shells, so runs outlive them); `nbflow down` stops it, keeping runs and logs."
    )
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


# --- the command line itself ------------------------------------------------------
def _parsers(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield parser.prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _parsers(child)


def test_every_option_and_argument_of_every_command_has_help() -> None:
    found = list(_parsers(build_parser()))
    assert {prog for prog, _ in found} >= {f"nbflow {c}" for c in ("up", "down", "runs", "api")}
    missing = [
        f"{prog} {'/'.join(action.option_strings) or action.dest}"
        for prog, parser in found
        for action in parser._actions
        if not action.help or action.help == argparse.SUPPRESS
    ]
    assert missing == []


def test_version_is_the_package_version(nbflow_home) -> None:
    assert _nbflow(nbflow_home, "--version").stdout.strip() == f"nbflow {__version__}"


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["api", "--port", "99999"], "--port: expected a port number from 1 to 65535"),
        (["runs", "--redis", "notaurl"], "'notaurl' is not a Redis URL"),
        (["runs", "--limit", "-1"], "--limit: expected a whole number of 1 or more, not '-1'"),
        (["runs", "--limit", "0"], "--limit: expected a whole number of 1 or more"),
        (["runs", "--cursor", "1.5"], "--cursor: '1.5' is not a cursor"),
        (["runs", "--status", "done"], "--status: invalid choice: 'done'"),
        (["up", "--workers", "0"], "--workers: expected a whole number of 1 or more"),
        (["worker", "--concurrency", "x"], "--concurrency: expected a whole number"),
    ],
)
def test_bad_values_are_refused_with_a_usage_error_not_a_traceback(
    nbflow_home, args: list[str], said: str
) -> None:
    done = _nbflow(nbflow_home, *args, check=False)
    assert done.returncode == 2
    assert said in done.stderr and "usage: nbflow" in done.stderr
    assert "Traceback" not in done.stderr
    assert not _server_started(nbflow_home)


def test_a_bad_or_unreachable_redis_url_is_named_without_a_traceback(nbflow_home) -> None:
    env_url = subprocess.run(
        [sys.executable, "-m", "nbflow.cli", "runs"],
        env={**_env(nbflow_home), "NBFLOW_REDIS_URL": "localhost:6379"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert env_url.returncode == 2
    assert "$NBFLOW_REDIS_URL: 'localhost:6379' is not a Redis URL" in env_url.stderr
    unreachable = _nbflow(nbflow_home, "runs", "--redis", "redis://127.0.0.1:1", check=False)
    assert unreachable.returncode == 2
    assert "cannot reach Redis at redis://127.0.0.1:1" in unreachable.stderr
    for done in (env_url, unreachable):
        assert "Traceback" not in done.stderr


@pytest.mark.parametrize("command", ["api", "worker"])
def test_an_app_that_fails_to_import_shows_the_users_error_not_nbflows(
    nbflow_home, tmp_path: Path, command: str
) -> None:
    (tmp_path / "typo.py").write_text("import nbflow as nf\n\ndef broken(:\n    pass\n")
    (tmp_path / "crash.py").write_text("import nbflow as nf\n\nRATIO = 1 / 0\n")

    typo = _nbflow(nbflow_home, command, "--app", "typo", check=False, cwd=tmp_path)
    crash = _nbflow(nbflow_home, command, "--app", "crash", check=False, cwd=tmp_path)

    assert typo.returncode == crash.returncode == 2
    assert typo.stderr.startswith(f"nbflow {command}: cannot import the app module 'typo':")
    assert f'File "{tmp_path / "typo.py"}", line 3' in typo.stderr
    assert "def broken(:" in typo.stderr and "SyntaxError: invalid syntax" in typo.stderr
    assert crash.stderr.splitlines()[1:] == [
        "Traceback (most recent call last):",
        f'  File "{tmp_path / "crash.py"}", line 3, in <module>',
        "    RATIO = 1 / 0",
        "            ~~^~~",
        "ZeroDivisionError: division by zero",
    ]
    for done in (typo, crash):
        assert "nbflow/" not in done.stderr and "importlib" not in done.stderr
    assert not _server_started(nbflow_home)  # the app is checked before anything starts


def test_runs_logs_and_doctor_say_the_runtime_is_stopped_and_start_nothing(nbflow_home) -> None:
    for args in (["runs"], ["logs", "0123456789abcdef"], ["doctor"]):
        done = _nbflow(nbflow_home, *args, check=False)
        assert done.returncode == 2
        assert done.stderr == (
            f"nbflow {args[0]}: the embedded runtime is stopped; `nbflow up` starts it "
            "(its runs and logs are kept)\n"
        )
    assert not _server_started(nbflow_home)


def test_up_says_whether_it_started_the_runtime_or_found_it_running(nbflow_home) -> None:
    first = _nbflow(nbflow_home, "up", "--workers", "1").stdout
    again = _nbflow(nbflow_home, "up").stdout
    resized = _nbflow(nbflow_home, "up", "--workers", "3").stdout

    assert first.startswith("nbflow runtime up: server unix://") and "(started)" in first
    assert "started (1 workers)" in first
    pid = first.split("worker pool pid ")[1].split()[0]
    assert again.startswith("nbflow runtime already running: server unix://")
    assert f"worker pool pid {pid} (1 workers)" in again and "not applied" not in again
    assert f"worker pool pid {pid} (1 workers)" in resized
    assert "--workers 3 not applied" in resized and "nbflow up --workers 3" in resized


@pytest.mark.timeout(180)
def test_down_says_which_runs_it_waits_for_and_force_leaves_them_for_the_next_up(
    nbflow_home, tmp_path: Path
) -> None:
    (tmp_path / "napper.py").write_text(NAPPER)
    start = (
        "import sys, time\nfrom napper import nap\nrun = nap.submit(float(sys.argv[1]))\n"
        "while run.status() != 'running':\n    time.sleep(0.05)\nprint(run.id)\n"
    )
    _nbflow(nbflow_home, "up", "--workers", "1")
    napping = _python(nbflow_home, start.replace("sys.argv[1]", "'2'"), cwd=tmp_path).strip()

    down = _nbflow(nbflow_home, "down").stdout

    assert down.splitlines() == [
        f"waiting up to 30 s for 1 running run ({napping}) to finish; then they are handed "
        "back and go on at the next `nbflow up`. `nbflow down --force` stops at once.",
        "worker pool stopped; server stopped (data kept)",
    ]
    _nbflow(nbflow_home, "up", "--workers", "1")
    assert f"{napping}  nap                  succeeded" in _nbflow(nbflow_home, "runs").stdout

    stopped = _python(nbflow_home, start.replace("sys.argv[1]", "'3'"), cwd=tmp_path).strip()
    forced = _nbflow(nbflow_home, "down", "--force").stdout
    assert forced == "worker pool stopped; server stopped (data kept)\n"  # no waiting
    _nbflow(nbflow_home, "up", "--workers", "1")
    resumed = _python(
        nbflow_home,
        f"import nbflow as nf\nrun = nf.attach({stopped!r})\n"
        "print(run.result(timeout_s=60), run.meta().get('restarts'))",
        cwd=tmp_path,
    )
    assert resumed.split() == ["rested", "1"]  # killed mid-run, then run again after `up`


@pytest.mark.timeout(120)
def test_down_reports_runs_as_they_end_and_ctrl_c_leaves_the_pool_draining(
    nbflow_home, tmp_path: Path
) -> None:
    (tmp_path / "napper.py").write_text(NAPPER)
    _nbflow(nbflow_home, "up", "--workers", "1")
    short, long = _python(
        nbflow_home,
        "import time\nfrom napper import nap\nruns = [nap.submit(1.0), nap.submit(8.0)]\n"
        "while any(r.status() != 'running' for r in runs):\n    time.sleep(0.05)\n"
        "print(*[r.id for r in runs])\n",
        cwd=tmp_path,
    ).split()
    down = subprocess.Popen(
        [sys.executable, "-m", "nbflow.cli", "down"],
        env=_env(nbflow_home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert down.stdout is not None
        first, second = down.stdout.readline(), down.stdout.readline()  # the second after ~5 s
        down.send_signal(signal.SIGINT)
        _, said = down.communicate(timeout=30)
    finally:
        if down.poll() is None:
            down.kill()
    assert first.startswith("waiting up to 30 s for 2 running runs (")
    assert short in first and long in first
    assert second == f"still waiting for 1 running run ({long})\n"
    assert down.returncode == 130
    assert "stopped waiting: the pool goes on draining by itself" in said
    assert "Traceback" not in said
    status = json.loads(_nbflow(nbflow_home, "status", "--json").stdout)
    assert status["server"]["running"]  # the pool drains on; `down` did not get that far


def test_readme_rest_example_serves_a_module_from_the_users_directory(
    nbflow_home, tmp_path: Path
) -> None:
    # As the README says: save myflow.py in a directory, `nbflow api --app myflow` there,
    # on the default (embedded) runtime, which this starts. The pool's workers cannot
    # import myflow (they start in NBFLOW_HOME), nor the module beside it that it uses.
    (tmp_path / "myflow.py").write_text(README_APP)
    (tmp_path / "punctuation.py").write_text(
        "def exclaim(text: str) -> str:\n    return text + '!'\n"
    )
    port = free_port()
    log = tmp_path / "api.log"
    with log.open("wb") as out:
        api = subprocess.Popen(
            [sys.executable, "-m", "nbflow.cli", "api", "--app", "myflow", "--port", str(port)],
            cwd=tmp_path,
            env=_env(nbflow_home),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for_api(api, base, log)
        body = {"input": {"name": "otters"}}
        sync = httpx.post(f"{base}/workflows/greet", json=body, timeout=60).json()
        assert sync["status"] == "succeeded", sync
        assert sync["output"] == "HELLO, OTTERS!"

        started = httpx.post(f"{base}/workflows/greet/start", json=body, timeout=30)
        assert started.status_code == 202
        run_id = started.json()["run_id"]
        detail = _wait_for_end(base, run_id)
        assert detail["status"] == "succeeded" and detail["output"] == "HELLO, OTTERS!"

        streamed = _stream(base, "POST", "/workflows/greet", body=body)
        assert streamed[-1].event == "run.succeeded"
        assert any(f.data.get("chunk") == "composing… " for f in streamed if f.data)
        followed = _stream(base, "GET", f"/runs/{run_id}/events")
        resumed = _stream(base, "GET", f"/runs/{run_id}/events", last_id=followed[2].id)
        assert [f.id for f in resumed] == [f.id for f in followed[3:]]
    finally:
        api.terminate()
        api.wait(30)
    assert "module myflow is shipped by value" in log.read_text()


README_APP = textwrap.dedent(
    """\
    import nbflow as nf
    from punctuation import exclaim

    @nf.component
    def shout(text: str) -> str:
        return text.upper()

    @nf.workflow
    def greet(name: str) -> str:
        nf.emit("composing… ")
        return exclaim(shout(f"hello, {name}"))
    """
)


def _wait_for_api(api: subprocess.Popen[bytes], base: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert api.poll() is None, log.read_text()
        try:
            if httpx.get(f"{base}/workflows", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"nbflow api did not answer within 60 s:\n{log.read_text()}")


def _wait_for_end(base: str, run_id: str) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        detail: dict[str, object] = httpx.get(f"{base}/runs/{run_id}", timeout=10).json()
        if detail["status"] in ("succeeded", "failed", "cancelled"):
            return detail
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not end within 60 s")


def _stream(
    base: str, method: str, path: str, *, body: object = None, last_id: str | None = None
) -> list[Frame]:
    headers = {"Accept": "text/event-stream"}
    if last_id is not None:
        headers["Last-Event-ID"] = last_id
    with httpx.stream(method, base + path, json=body, headers=headers, timeout=60) as response:
        assert response.status_code == 200, response.read()
        return list(events(response))
