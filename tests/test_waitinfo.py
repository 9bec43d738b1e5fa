"""What a waiting run waits for, in one line: listings, ``nf.runs()`` and terminal views."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import nbflow as nf
from nbflow._waitinfo import describe_wait, field_kind, wait_of
from nbflow.runtime.client import Runtime

from .conftest import wait_until
from .runtime.rt_apps import approval


def test_each_kind_of_wait_reads_as_one_line() -> None:
    soon = time.time() + 60
    clock = time.strftime("%H:%M:%S", time.localtime(soon))
    assert describe_wait({"kind": "input", "name": "ok", "prompt": "Ship\n it?"}) == (
        "input 'ok': Ship it?"
    )
    assert describe_wait({"kind": "input", "name": "ok", "until": soon}) == (
        f"input 'ok' (answer by {clock})"
    )
    assert describe_wait({"kind": "sleep", "until": soon}) == f"timer until {clock}"
    assert describe_wait({"kind": "children", "runs": ["a", "b"]}) == "2 child runs"
    assert describe_wait({"kind": "children", "runs": ["a"]}) == "1 child run"
    assert describe_wait(None) == ""
    long = describe_wait({"kind": "input", "name": "x", "prompt": "y" * 500})
    assert len(long) < 100 and long.endswith("…")


def test_the_wait_is_read_only_from_a_waiting_run() -> None:
    wait = {"kind": "sleep", "until": 1.0}
    assert wait_of({"status": "waiting", "wait": json.dumps(wait)}) == wait
    assert wait_of({"status": "queued", "wait": json.dumps(wait)}) is None
    assert wait_of({"status": "waiting", "wait": "{not json"}) is None
    assert wait_of({"status": "waiting"}) is None


def test_nf_runs_has_what_each_waiting_run_waits_for(
    runtime: Runtime, worker: Callable[..., Any], redis_url: str
) -> None:
    worker()
    run = approval.submit(redis_url, "frame")
    wait_until(lambda: run.status() == "waiting", timeout_s=15)
    frame = nf.runs(status="waiting")
    assert frame.set_index("run_id").loc[run.id, "waiting_for"] == "input 'approve': Publish?"
    run.send_input("approve", True)
    run.result(timeout_s=15)
    assert nf.runs().set_index("run_id").loc[run.id, "waiting_for"] == ""


FIELDS = json.loads((Path(__file__).parent / "vectors" / "wait_fields.json").read_text())["cases"]


@pytest.mark.parametrize(("schema", "kind"), FIELDS, ids=[json.dumps(s) for s, _k in FIELDS])
def test_each_schema_gets_the_field_the_front_end_also_gives_it(
    schema: dict[str, Any] | None, kind: str
) -> None:
    assert field_kind(schema) == kind
