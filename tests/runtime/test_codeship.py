"""Signed blobs are bound to what they are for: moved anywhere else, they are refused."""

from __future__ import annotations

from typing import Any

import pytest
import redis

import nbflow as nf
from nbflow import constants as c
from nbflow.errors import PayloadRejected
from nbflow.runtime import codeship
from nbflow.runtime.client import Runtime

from ..conftest import TEST_SECRET


@nf.workflow
def add(a: int, b: int) -> int:
    return a + b


@nf.workflow
def subtract(a: int, b: int) -> int:
    return a - b


RUN_A, RUN_B = "0123456789abcdef", "fedcba9876543210"


@pytest.mark.parametrize(
    ("written_for", "read_as"),
    [
        (codeship.args_for(RUN_A), codeship.args_for(RUN_B)),
        (codeship.code_for("add"), codeship.args_for(RUN_A)),
        (codeship.args_for(RUN_A), codeship.code_for("add")),
        (codeship.result_for(RUN_A), codeship.args_for(RUN_A)),
        (codeship.step_for(RUN_A, "s1"), codeship.step_for(RUN_A, "s2")),
        (codeship.step_for(RUN_A, "s1"), codeship.step_for(RUN_B, "s1")),
        (codeship.cache_for("k1"), codeship.cache_for("k2")),
        (codeship.code_for("add"), codeship.code_for("subtract")),
    ],
    ids=str,
)
def test_a_blob_read_for_anything_but_what_it_was_signed_for_is_refused(
    written_for: codeship.Binding, read_as: codeship.Binding
) -> None:
    blob = codeship.pack({"x": 1}, TEST_SECRET, written_for)
    assert codeship.unpack(blob, TEST_SECRET, written_for) == {"x": 1}
    with pytest.raises(PayloadRejected) as refused:
        codeship.unpack(blob, TEST_SECRET, read_as)
    assert f"is the {written_for}, not the {read_as}" in str(refused.value)


def test_a_blob_whose_header_is_rewritten_to_another_binding_fails_its_signature() -> None:
    blob = codeship.pack((), TEST_SECRET, codeship.args_for(RUN_A))
    moved = blob.replace(RUN_A.encode(), RUN_B.encode())
    assert moved != blob and len(moved) == len(blob)
    with pytest.raises(PayloadRejected, match="signature does not match"):
        codeship.unpack(moved, TEST_SECRET, codeship.args_for(RUN_B))


def test_code_stored_under_a_digest_must_be_the_code_of_that_digest() -> None:
    old = codeship.pack(add, TEST_SECRET, codeship.code_for("add"))
    new = codeship.pack((add, "v2"), TEST_SECRET, codeship.code_for("add"))
    assert codeship.unpack(new, TEST_SECRET, codeship.code_for("add", codeship.digest(new)))
    with pytest.raises(PayloadRejected, match="not the code of that digest"):
        codeship.unpack(old, TEST_SECRET, codeship.code_for("add", codeship.digest(new)))


def test_a_blob_from_before_bindings_is_refused_saying_to_send_it_again() -> None:
    blob = codeship.pack(1, TEST_SECRET, codeship.args_for(RUN_A))
    unbound = codeship.UNBOUND_MAGIC + blob[len(codeship.MAGIC) :]
    with pytest.raises(PayloadRejected, match=r"earlier nbflow .* again"):
        codeship.unpack(unbound, TEST_SECRET, codeship.args_for(RUN_A))


def test_an_owner_with_nul_cannot_be_bound() -> None:
    with pytest.raises(ValueError, match="NUL"):
        codeship.step_for(RUN_A, "a\0b")


def _failure(runtime: Runtime, run_id: str) -> tuple[str, str]:
    run = runtime.attach(run_id)
    with pytest.raises(nf.RunFailed) as failed:
        run.result(timeout_s=10)
    return run.meta()["reason"], str(failed.value)


def test_the_worker_refuses_one_runs_arguments_given_to_another_run(
    runtime: Runtime, worker: Any, r: redis.Redis
) -> None:
    a, b = add.submit(1, 2), add.submit(10, 20)  # no worker yet: both wait in the queue
    r.hset(c.run_meta(b.id), "args", r.hget(c.run_meta(a.id), "args") or b"")
    worker()
    assert a.result(timeout_s=10) == 3
    reason, message = _failure(runtime, b.id)
    assert reason == "payload_rejected"
    assert f"args of {a.id!r}, not the args of {b.id!r}" in message


def test_the_worker_refuses_code_given_as_arguments(
    runtime: Runtime, worker: Any, r: redis.Redis
) -> None:
    run = add.submit(1, 2)
    digest = run.meta()["code"]
    code = r.get(c.CODE_KEY.format(digest=digest))
    r.hset(c.run_meta(run.id), "args", code or b"")
    worker()
    reason, message = _failure(runtime, run.id)
    assert reason == "payload_rejected"
    assert f"code of 'add', not the args of {run.id!r}" in message


def test_the_worker_refuses_one_workflows_code_under_another_workflows_name(
    runtime: Runtime, worker: Any, r: redis.Redis
) -> None:
    run = add.submit(5, 3)
    other = runtime.ship(subtract)
    r.hset(c.run_meta(run.id), "code", other)  # the run still says it runs 'add'
    worker()
    reason, message = _failure(runtime, run.id)
    assert reason == "payload_rejected"
    assert "code of 'subtract', not the code of 'add'" in message
