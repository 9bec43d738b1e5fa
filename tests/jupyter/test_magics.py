"""The magics, in-process on IPython's InteractiveShell, against a real runtime."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

import nbflow as nf
from nbflow import constants as c
from nbflow.jupyter import display as dsp
from nbflow.jupyter import follower, magics, view
from nbflow.runtime.run import Run

from ..conftest import last_local_run, last_run
from .conftest import cell


def test_component_magic_wraps_every_function_with_the_options(shell: InteractiveShell) -> None:
    cell(
        shell,
        "component --retry 3 --cache 60 --timeout 5",
        "def a(x):\n    return x + 1\n\nasync def b():\n    return 2\n\nc = 3\n",
    )
    a, b = shell.user_ns["a"], shell.user_ns["b"]
    assert isinstance(a, nf.Component) and isinstance(b, nf.Component)
    assert a.name == "a" and a.retry is not None and a.retry.attempts == 3
    assert a.cache is not None and a.cache.ttl_s == 60 and a.timeout_s == 5
    assert b.is_async and shell.user_ns["c"] == 3
    assert a(1) == 2


def test_component_magic_keeps_a_decorated_functions_own_options(shell: InteractiveShell) -> None:
    cell(shell, "component --retry 5", "@nf.component(cache=10)\ndef d():\n    return 1\n")
    d = shell.user_ns["d"]
    assert d.cache is not None and d.cache.ttl_s == 10 and d.retry is None


def test_component_magic_rejects_unknown_options(shell: InteractiveShell) -> None:
    with pytest.raises(UsageError):
        cell(shell, "component --retries 3", "def a():\n    pass\n")


def test_component_magic_on_a_cell_without_a_function_says_so(shell: InteractiveShell) -> None:
    with pytest.raises(UsageError, match="defines no function"):
        cell(shell, "component --retry 3", "fetch = lambda url: url\n")
    assert "fetch" not in shell.user_ns  # the cell was not run


def test_workflow_line_parses_args_literals_and_flags() -> None:
    name, inputs, flags = magics.parse_workflow_line(
        "blog --topic 'durable agents' --n 3 --ratio=0.5 --tags [1,2] --local --new"
    )
    assert name == "blog"
    assert inputs == {"topic": "durable agents", "n": 3, "ratio": 0.5, "tags": [1, 2]}
    assert flags == {"local", "new"}
    with pytest.raises(UsageError):
        magics.parse_workflow_line("--topic x")


@pytest.mark.parametrize("line", ["blog --n", "blog --n --local", "blog --topic x --n"])
def test_workflow_argument_without_a_value_is_an_error_not_true(line: str) -> None:
    with pytest.raises(UsageError, match=r"--n needs a value \(--n VALUE, or --n=VALUE\)"):
        magics.parse_workflow_line(line)
    assert magics.parse_workflow_line("blog --flag=True --n -3")[1] == {"flag": True, "n": -3}


def test_local_workflow_cell_returns_its_last_expression_and_sets_last_run(
    shell: InteractiveShell,
) -> None:
    cell(shell, "component", "def double(x):\n    return 2 * x\n")
    value = cell(
        shell,
        "workflow twice --x 4 --local",
        "nf.progress('double')\nnf.emit('working')\ny = double(x)\ny + 1\n",
    )
    assert value == 9
    run = last_run()
    assert run.workflow == "twice" and run.status() == "succeeded"
    assert isinstance(shell.user_ns["twice"], nf.Workflow)
    names = [s.name for s in run.trace().state.spans.values()]
    assert names == ["twice", "double"]
    bundle = run._repr_mimebundle_()
    assert bundle[dsp.MIME]["mode"] == "local"
    assert bundle[dsp.MIME]["snapshot"]["emitted_tail"] == "working"


def test_local_workflow_cell_raises_the_cells_error(shell: InteractiveShell) -> None:
    with pytest.raises(ZeroDivisionError):
        cell(shell, "workflow boom --local --no-display", "1 / 0\n")
    assert last_run().status() == "failed"


def test_workflow_cell_with_await_becomes_an_async_workflow(shell: InteractiveShell) -> None:
    value = cell(
        shell,
        "workflow waits --local --no-display",
        "import asyncio\nawait asyncio.sleep(0)\n'ok'\n",
    )
    assert value == "ok" and shell.user_ns["waits"].is_async


def test_workflow_cell_submits_to_the_runtime_and_shows_it_live(
    shell: InteractiveShell, worker: Callable[..., Any]
) -> None:
    worker()
    cell(shell, "component", "def add(a, b):\n    return a + b\n")
    assert cell(shell, "workflow adder --a 2 --b 3", "nf.progress('add')\nadd(a, b)\n") is None
    run = last_run()
    assert isinstance(run, Run)
    assert run.result(timeout_s=20) == 5
    live = view.views()[-1]
    assert live.run is run and live.wait(10)
    assert live.state.status == "succeeded"
    assert [e["id"] for e in run.events(follow=False)] == live.event_ids
    meta = run.meta()
    assert meta["cell"] == magics.cell_key(
        "adder", "nf.progress('add')\nadd(a, b)\n", {"a": 2, "b": 3}
    )


def test_rerunning_an_in_flight_cell_attaches_and_new_forces_another(
    shell: InteractiveShell, worker: Callable[..., Any]
) -> None:
    body = "import time\ntime.sleep(1.5)\nx\n"
    cell(shell, "workflow slow --x 1 --no-display", body)
    first = last_run()
    cell(shell, "workflow slow --x 1 --no-display", body)
    assert last_run().id == first.id
    cell(shell, "workflow slow --x 2 --no-display", body)
    other_args = last_run()
    cell(shell, "workflow slow --x 1 --no-display --new", body)
    forced = last_run()
    assert len({first.id, other_args.id, forced.id}) == 3
    worker()
    assert first.result(timeout_s=20) == 1 and forced.result(timeout_s=20) == 1
    cell(shell, "workflow slow --x 1 --no-display", body)
    again = last_run()
    assert again.id not in (first.id, forced.id)  # the first one had ended
    assert again.result(timeout_s=20) == 1 and other_args.result(timeout_s=20) == 2


def test_nbflow_attach_without_argument_replays_this_processes_runs(
    shell: InteractiveShell, worker: Callable[..., Any]
) -> None:
    worker()
    cell(shell, "workflow quick --no-display", "nf.emit('hi')\n42\n")
    run = last_run()
    run.result(timeout_s=20)
    shell.run_line_magic("nbflow", "attach")
    live = view.views()[-1]
    assert live.run.id == run.id and live.wait(10)
    ids = live.event_ids
    assert ids == sorted(set(ids), key=lambda i: tuple(map(int, i.split("-"))))
    assert live.state.status == "succeeded" and "".join(live.state.chunks) == "hi"
    shell.run_line_magic("nbflow", f"attach {run.id}")
    assert view.views()[-1].run.id == run.id


def test_nbflow_runs_status_and_deploy(
    shell: InteractiveShell, runtime: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    cell(shell, "workflow listed --no-display", "1\n")
    frame = shell.run_line_magic("nbflow", "runs")
    assert list(frame["workflow"]) == ["listed"]
    shell.run_line_magic("nbflow", "status")
    shell.run_line_magic("nbflow", "deploy listed")
    out = capsys.readouterr().out
    assert "runs in flight" in out and "deployed 'listed'" in out
    assert runtime.redis.hget("nbflow:deployed", "listed")
    with pytest.raises(UsageError):
        shell.run_line_magic("nbflow", "deploy nothing_here")
    with pytest.raises(UsageError):
        shell.run_line_magic("nbflow", "bogus")


def test_this_notebooks_runs_are_found_behind_other_notebooks_newer_runs(
    shell: InteractiveShell, runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The magics filter before they limit: a notebook's run stays listed, and its cell
    re-attaches, however many runs other notebooks started since."""
    monkeypatch.setattr(magics, "kernel_origin", lambda: {"notebook": "mine.ipynb"})

    @nf.workflow
    def busy() -> int:
        return 1

    cell(shell, "workflow quiet --no-display", "1\n")  # this notebook's run, queued
    mine = last_run()
    runtime.redis.hset(c.run_meta(mine.id), mapping={"notebook": "mine.ipynb"})
    runtime.submit_many(busy, [((), {})] * (magics.RECENT_RUNS + 5), notebook="other.ipynb")
    assert [m["run_id"] for m in magics.my_runs(runtime)] == [mine.id]
    assert magics.latest_runs(runtime) == [mine.id]
    cell(shell, "workflow quiet --no-display", "1\n")  # in flight: attached, not started
    assert last_run().id == mine.id
    runtime.redis.hset(c.run_meta(mine.id), "status", "waiting")
    cell(shell, "workflow quiet --no-display", "1\n")  # a waiting run is in flight too
    assert last_run().id == mine.id


def test_view_throttles_and_tells_each_event_once_in_log_order() -> None:
    ticks: list[dict[str, Any]] = []

    @nf.component
    def leaf(i: int) -> int:
        time.sleep(0.0005)
        return i

    @nf.workflow
    def many(n: int) -> int:
        for i in range(n):
            leaf(i)
        return n

    before = nf.last_run()
    thread = threading.Thread(target=many, args=(2_000,))
    thread.start()
    while nf.last_run() is before:
        time.sleep(0.001)
    run = last_local_run()
    following = follower.Follower(run)
    following.listen(ticks.append)
    started = time.monotonic()
    following.start()
    thread.join()
    assert following.finished.wait(10)
    took_s = time.monotonic() - started
    assert len(ticks) <= took_s / follower.TICK_S + 2  # at most ten a second
    told = [event for tick in ticks for event in tick["events"]]
    assert told == run.sink.events  # every event once, in the log's order
    assert len([e for e in told if e["type"] == "span.started"]) == 2_001
    assert ticks[-1]["final"] and told[-1]["type"] == "run.succeeded"
    with following.lock:
        assert following.replay() == told  # what a view drawn now folds first
