"""nf.wait: many runs awaited at once, their statuses in the order given."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

import nbflow as nf
from nbflow.errors import ConfigError, RunNotFound
from nbflow.runtime.client import Runtime
from nbflow.runtime.run import Run
from nbflow.runtime.waiting import WINDOW


@nf.workflow
def pause(sleep_s: float = 0.0) -> float:
    time.sleep(sleep_s)
    return sleep_s


@nf.workflow
def fails() -> None:
    raise ValueError("no")


@nf.workflow
def asks() -> Any:
    return nf.wait_for_input("go")


@nf.workflow
def waits_inside(child_id: str) -> Any:
    return nf.wait([nf.attach(child_id)])


def test_an_empty_list_answers_at_once_without_a_runtime() -> None:
    assert nf.wait([]) == []


def test_finished_runs_answer_at_once_in_the_order_given(runtime: Runtime, worker: Any) -> None:
    worker()
    runs = [pause.submit(), fails.submit(), pause.submit()]
    assert nf.wait(runs, timeout_s=20) == ["succeeded", "failed", "succeeded"]
    started = time.monotonic()
    assert nf.wait(runs[::-1], timeout_s=0) == ["succeeded", "failed", "succeeded"]
    assert nf.wait([runs[1], runs[1]], timeout_s=0) == ["failed", "failed"]
    assert time.monotonic() - started < 2.0


def test_runs_still_going_are_waited_for_and_a_failure_is_a_status(
    runtime: Runtime, worker: Any
) -> None:
    worker(concurrency=8)
    runs = [pause.submit(0.3), fails.submit(), pause.submit(0.5)]
    started = time.monotonic()
    assert nf.wait(runs, timeout_s=20) == ["succeeded", "failed", "succeeded"]
    assert 0.5 <= time.monotonic() - started < 10.0
    assert [r.status() for r in runs] == ["succeeded", "failed", "succeeded"]


def test_more_runs_than_one_read_follows_all_end(runtime: Runtime, worker: Any) -> None:
    worker(concurrency=8)
    runs = pause.submit_many([()] * (WINDOW + 30))
    assert nf.wait(runs, timeout_s=60) == ["succeeded"] * (WINDOW + 30)


def test_the_timeout_is_kept_from_below_and_above(runtime: Runtime, worker: Any) -> None:
    worker()
    waiting, done = asks.submit(), pause.submit()
    assert nf.wait([done], timeout_s=20) == ["succeeded"]
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"1 of 2 runs still not ended after 0\.4 s"):
        nf.wait([done, waiting], timeout_s=0.4)
    assert 0.4 <= time.monotonic() - started < 3.0
    with pytest.raises(TimeoutError):
        nf.wait([waiting], timeout_s=0)
    waiting.send_input("go", 1)
    assert nf.wait([waiting, done], timeout_s=20) == ["succeeded", "succeeded"]


def test_a_cancelled_run_is_a_status(runtime: Runtime) -> None:
    waiting = asks.submit()
    waiting.cancel()
    assert nf.wait([waiting], timeout_s=5) == ["cancelled"]


def test_an_unknown_run_is_run_not_found(runtime: Runtime) -> None:
    with pytest.raises(RunNotFound, match="nosuchrun"):
        nf.wait([Run(runtime, "nosuchrun")], timeout_s=1)


def test_inside_a_run_it_is_refused_for_gather(
    runtime: Runtime, worker: Callable[..., Any]
) -> None:
    worker()
    child = pause.submit()
    parent = waits_inside.submit(child.id)
    with pytest.raises(nf.RunFailed) as failed:
        parent.result(timeout_s=20)
    assert failed.value.error_type == ConfigError.__name__
    assert "nf.gather" in str(failed.value)
