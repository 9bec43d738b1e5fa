"""Workflows: the root of an in-process run, span nesting, progress, output and failure."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest

import nbflow as nf
from nbflow._cache import local_cache


@pytest.fixture(autouse=True)
def clean_state():
    local_cache.clear()
    yield
    nf.set_testing(False)
    local_cache.clear()


@nf.component
def leaf(x: int) -> int:
    return x


@nf.component
async def aleaf(x: int) -> int:
    await asyncio.sleep(0)
    return x


def spans_by_name(run=None):
    spans = (run or nf.last_run()).trace().spans
    return {name: group for name, group in spans.groupby("name")}


def span_of(name, run=None):
    group = spans_by_name(run)[name]
    assert len(group) == 1, f"{len(group)} spans named {name}"
    return group.iloc[0]


def assert_children(parent_name, child_name, count, run=None):
    parent = span_of(parent_name, run)
    children = spans_by_name(run)[child_name]
    assert len(children) == count
    assert set(children["parent_id"]) == {parent["span_id"]}
    assert set(children["depth"]) == {parent["depth"] + 1}


# --- running ---------------------------------------------------------------------


def test_workflow_called_as_a_function_runs_in_process_and_returns_its_value():
    @nf.workflow
    def flow(x: int) -> int:
        return leaf(x) + 1

    assert flow(41) == 42
    run = nf.last_run()
    assert run.workflow == "flow"
    assert run.status() == "succeeded"
    assert run.result(timeout_s=0) == 42
    assert run.trace().status == "succeeded"


def test_workflow_decorator_with_arguments():
    @nf.workflow(name="pipeline", retry=2)
    def flow() -> str:
        """Does the whole thing."""
        return "ok"

    assert isinstance(flow, nf.Workflow)
    assert flow() == "ok"
    assert flow.name == "pipeline"
    assert flow.description == "Does the whole thing."
    assert span_of("pipeline")["kind"] == "workflow"


def test_async_workflow_runs_with_asyncio():
    @nf.workflow
    async def flow() -> int:
        return await aleaf(1) + await aleaf(2)

    assert asyncio.run(flow()) == 3
    assert_children("flow", "aleaf", 2)


def test_each_call_is_a_new_run_and_last_run_follows():
    @nf.workflow
    def flow() -> str | None:
        return nf.current_run_id()

    first = flow()
    second = flow()
    assert first != second
    assert nf.last_run().id == second


def test_current_run_id_is_none_outside_a_run():
    assert nf.current_run_id() is None


def test_root_span_has_no_parent_and_depth_zero():
    @nf.workflow
    def flow() -> None:
        leaf(1)

    flow()
    root = span_of("flow")
    assert pd.isna(root["parent_id"])
    assert root["depth"] == 0
    assert root["kind"] == "workflow"


# --- nesting ---------------------------------------------------------------------


def test_components_nested_at_depth_get_correct_parents():
    @nf.component
    def level3() -> int:
        return leaf(3)

    @nf.component
    def level2() -> int:
        return level3() + leaf(2)

    @nf.workflow
    def flow() -> int:
        return level2()

    flow()
    assert_children("flow", "level2", 1)
    assert_children("level2", "level3", 1)
    assert span_of("level3")["depth"] == 2
    leaves = spans_by_name()["leaf"]
    by_parent = dict(zip(leaves["parent_id"], leaves["depth"], strict=True))
    assert by_parent == {span_of("level3")["span_id"]: 3, span_of("level2")["span_id"]: 2}


def test_nested_workflow_is_a_child_span_of_kind_workflow():
    @nf.workflow
    def inner() -> int:
        return leaf(1)

    @nf.workflow
    def outer() -> int:
        return inner() + leaf(2)

    assert outer() == 3
    assert nf.last_run().workflow == "outer"
    assert_children("outer", "inner", 1)
    assert span_of("inner")["kind"] == "workflow"
    leaves = spans_by_name()["leaf"]
    assert set(leaves["parent_id"]) == {span_of("inner")["span_id"], span_of("outer")["span_id"]}


def test_repeated_calls_get_distinct_span_ids():
    @nf.workflow
    def flow() -> None:
        for _ in range(3):
            leaf(1)
        leaf(2)

    flow()
    leaves = spans_by_name()["leaf"]
    assert leaves["span_id"].nunique() == 4


def test_components_in_threading_thread_nest_under_the_caller():
    @nf.component
    def fan_out() -> None:
        threads = [threading.Thread(target=leaf, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    @nf.workflow
    def flow() -> None:
        fan_out()

    flow()
    assert_children("fan_out", "leaf", 3)


def test_components_in_thread_pool_executor_nest_under_the_caller():
    @nf.component
    def fan_out() -> list[int]:
        with ThreadPoolExecutor(max_workers=3) as pool:
            mapped = list(pool.map(leaf, range(4)))
            submitted = pool.submit(leaf, 10).result()
        return [*mapped, submitted]

    @nf.workflow
    def flow() -> list[int]:
        return fan_out()

    assert flow() == [0, 1, 2, 3, 10]
    assert_children("fan_out", "leaf", 5)


def test_components_in_run_in_executor_nest_under_the_caller():
    @nf.component
    async def fan_out() -> list[int]:
        loop = asyncio.get_running_loop()
        return list(await asyncio.gather(*(loop.run_in_executor(None, leaf, i) for i in range(3))))

    @nf.workflow
    async def flow() -> list[int]:
        return await fan_out()

    assert asyncio.run(flow()) == [0, 1, 2]
    assert_children("fan_out", "leaf", 3)


def test_components_in_asyncio_gather_nest_under_the_caller():
    @nf.component
    async def fan_out() -> list[int]:
        return list(await asyncio.gather(*(aleaf(i) for i in range(5))))

    @nf.workflow
    async def flow() -> list[int]:
        return await fan_out()

    assert asyncio.run(flow()) == [0, 1, 2, 3, 4]
    assert_children("fan_out", "aleaf", 5)


def test_async_components_from_a_sync_workflow_via_asyncio_run_nest_under_it():
    @nf.workflow
    def flow() -> list[int]:
        async def both() -> list[int]:
            return list(await asyncio.gather(aleaf(1), aleaf(2)))

        return asyncio.run(both())

    assert flow() == [1, 2]
    assert_children("flow", "aleaf", 2)


def test_threads_started_outside_a_run_carry_no_run():
    results: list[str | None] = []

    def work() -> None:
        results.append(nf.current_run_id())

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert results == [None]


# --- progress and output ---------------------------------------------------------


def test_progress_marks_named_steps_and_a_new_step_ends_the_last():
    @nf.workflow
    def flow() -> None:
        nf.progress("outline", state="pending")
        nf.progress("draft", state="pending")
        nf.progress("outline")
        nf.progress("draft", detail="2 of 3")

    flow()
    trace = nf.last_run().trace()
    steps = trace.state.steps
    assert {name: s.state for name, s in steps.items()} == {"outline": "done", "draft": "done"}
    assert steps["draft"].detail == "2 of 3"
    events = [e for e in nf.last_run().events() if e["type"] == "progress"]
    assert [(e["step"], e["state"]) for e in events] == [
        ("outline", "pending"),
        ("draft", "pending"),
        ("outline", "running"),
        ("draft", "running"),
    ]


def test_progress_of_a_failed_run_marks_the_running_step_failed():
    @nf.workflow
    def flow() -> None:
        nf.progress("fetch")
        raise RuntimeError("down")

    with pytest.raises(RuntimeError):
        flow()
    assert nf.last_run().trace().state.steps["fetch"].state == "failed"


def test_progress_rejects_unknown_states():
    with pytest.raises(nf.ConfigError, match="unknown progress state 'halfway'"):
        nf.progress("x", state="halfway")


def test_progress_and_emit_outside_a_run_do_nothing():
    nf.progress("anything")
    nf.emit("dropped")


def test_emit_streams_output_chunks_in_order():
    @nf.component
    def write(part: str) -> None:
        nf.emit(part)

    @nf.workflow
    def flow() -> None:
        nf.emit("Hello")
        write(", ")
        nf.emit("world")

    flow()
    run = nf.last_run()
    outputs = [e for e in run.events() if e["type"] == "output"]
    assert [e["chunk"] for e in outputs] == ["Hello", ", ", "world"]
    assert run.trace().emitted == "Hello, world"
    assert outputs[1]["span_id"] == span_of("write")["span_id"]


# --- failure ---------------------------------------------------------------------


def test_failing_component_marks_its_span_and_the_run_error_keeps_earlier_spans_and_reraises():
    @nf.component
    def broken() -> None:
        raise ValueError("bad input")

    @nf.workflow
    def flow() -> None:
        leaf(1)
        leaf(2)
        broken()
        leaf(3)

    with pytest.raises(ValueError, match="bad input"):
        flow()
    run = nf.last_run()
    assert run.status() == "failed"
    trace = run.trace()
    assert trace.status == "failed"
    assert trace.state.error == "ValueError: bad input"
    assert "raise ValueError" in trace.state.traceback
    spans = trace.spans
    assert list(spans["name"]) == ["flow", "leaf", "leaf", "broken"]
    assert list(spans["status"]) == ["error", "ok", "ok", "error"]
    assert span_of("broken")["error"] == "ValueError: bad input"


def test_error_caught_by_the_workflow_leaves_the_run_succeeded():
    @nf.component
    def broken() -> None:
        raise KeyError("k")

    @nf.workflow
    def flow() -> str:
        try:
            broken()
        except KeyError:
            return "recovered"
        return "unreachable"

    assert flow() == "recovered"
    assert nf.last_run().status() == "succeeded"
    assert span_of("broken")["status"] == "error"
    assert span_of("flow")["status"] == "ok"


def test_cancelling_a_run_stops_it_at_the_next_component():
    @nf.workflow
    def flow() -> None:
        leaf(1)
        nf.last_run().cancel()
        leaf(2)

    with pytest.raises(nf.RunCancelled):
        flow()
    run = nf.last_run()
    assert run.status() == "cancelled"
    trace = run.trace()
    assert trace.status == "cancelled"
    assert list(trace.spans["status"]) == ["cancelled", "ok"]


def test_run_events_after_an_id_returns_only_later_events():
    @nf.workflow
    def flow() -> None:
        leaf(1)

    flow()
    run = nf.last_run()
    events = list(run.events())
    assert [e["type"] for e in events] == [
        "run.started",
        "span.started",
        "span.started",
        "span.finished",
        "span.finished",
        "run.succeeded",
    ]
    assert list(run.events(after=events[2]["id"])) == events[3:]


# --- step keys -------------------------------------------------------------------


def test_step_keys_are_the_same_when_a_run_is_repeated():
    @nf.component
    def shaped(x, y=None) -> None:
        pass

    @nf.workflow
    def flow() -> None:
        shaped(1)
        shaped(1)
        shaped("1", y=[1, {"a": 2}])
        shaped(True)

    flow()
    first = list(nf.last_run().trace().spans["step"])
    flow()
    second = list(nf.last_run().trace().spans["step"])
    assert first == second
    assert len(set(first)) == len(first)


def test_step_keys_tell_arguments_of_different_types_apart():
    @nf.workflow
    def flow() -> None:
        for value in (1, "1", True, 1.0, None, [1], (1,)):
            leaf(value)

    flow()
    steps = spans_by_name()["leaf"]["step"]
    bases = {step.rsplit("/", 1)[1].split("#")[0] for step in steps}
    assert len(bases) == 6  # a list and a tuple of the same items are the same arguments


def test_inputs_are_recorded_by_name_for_every_parameter_shape():
    @nf.component
    def positional_only(a, b=2, /, c=3) -> None:
        pass

    @nf.component
    def variadic(a, *rest, flag=False, **extra) -> None:
        pass

    @nf.workflow
    def flow() -> None:
        positional_only(1)
        positional_only(1, 5, c=6)
        variadic(1, 2, 3, flag=True, colour="red")
        variadic(a=0)

    flow()
    recorded = list(nf.last_run().trace().spans["input"])[1:]
    assert recorded == [
        {"a": 1},
        {"a": 1, "b": 5, "c": 6},
        {"a": 1, "rest": [2, 3], "flag": True, "extra": {"colour": "red"}},
        {"a": 0},
    ]


def test_a_call_with_wrong_arguments_records_its_span_and_raises_the_users_type_error():
    @nf.component
    def needs_two(a, b) -> None:
        pass

    @nf.workflow
    def flow() -> None:
        needs_two(1, 2, 3)

    with pytest.raises(TypeError, match="positional argument"):
        flow()
    span = span_of("needs_two")
    assert span["status"] == "error"
    assert span["input"] == {"args": [1, 2, 3]}
