"""Components: decorator forms, standalone runs, retry, cache, time-out, recorded inputs."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any

import pytest

import nbflow as nf
from nbflow._cache import local_cache
from nbflow.constants import MAX_PREVIEW_CHARS, REDACTED

from .conftest import last_run


@pytest.fixture(autouse=True)
def clean_state():
    local_cache.clear()
    yield
    nf.set_testing(False)
    local_cache.clear()


@pytest.fixture
def testing():
    nf.set_testing(True)
    yield
    nf.set_testing(False)


def only_span(run=None):
    spans = (run or last_run()).trace().spans
    assert len(spans) == 1
    return spans.iloc[0]


def events_of(type_, run=None):
    return [e for e in (run or last_run()).events() if e["type"] == type_]


# --- decorating ----------------------------------------------------------------


def test_bare_decorator_makes_a_component_that_returns_the_functions_value():
    @nf.component
    def double(x: int) -> int:
        return 2 * x

    assert isinstance(double, nf.Component)
    assert double(4) == 8
    assert double.name == "double"


def test_decorator_with_arguments_applies_name_retry_cache_and_timeout():
    @nf.component(name="renamed", retry=4, cache=60, timeout_s=5)
    def fn(x: int) -> int:
        return x

    assert fn.name == "renamed"
    assert fn.retry is not None and fn.retry.attempts == 4
    assert fn.cache is not None and fn.cache.ttl_s == 60
    assert fn.timeout_s == 5
    assert fn(3) == 3
    assert only_span()["name"] == "renamed"


def test_decorator_keeps_the_functions_name_doc_and_signature():
    @nf.component
    def documented(a: int, b: str = "x") -> str:
        """Does a thing."""
        return b * a

    assert documented.__name__ == "documented"  # type: ignore[attr-defined]
    assert documented.__doc__ == "Does a thing."
    assert documented.__wrapped__(2, "y") == "yy"  # type: ignore[attr-defined]


def test_retry_and_cache_accept_dicts_and_true():
    @nf.component(retry={"attempts": 2, "backoff": "fixed"}, cache=True)
    def fn() -> int:
        return 1

    assert fn.retry is not None and (fn.retry.attempts, fn.retry.backoff) == (2, "fixed")
    assert fn.cache is not None and fn.cache.ttl_s is None


def test_async_component_bare_decorator_is_awaitable():
    @nf.component
    async def fetch(x: int) -> int:
        await asyncio.sleep(0)
        return x + 1

    assert fetch.is_async
    assert asyncio.run(fetch(1)) == 2


def test_async_component_with_decorator_arguments():
    @nf.component(name="afetch", retry=2)
    async def fetch(x: int) -> int:
        return x * 10

    assert asyncio.run(fetch(2)) == 20
    assert only_span()["name"] == "afetch"


def test_decorating_a_non_callable_raises_type_error_naming_it():
    with pytest.raises(TypeError, match="decorates a function, got 42"):
        nf.component(42)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="decorates a function"):
        nf.component(name="x")("not a function")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="decorates a function"):
        nf.workflow(3.5)  # type: ignore[call-overload]


def test_unknown_kind_is_a_config_error():
    with pytest.raises(nf.ConfigError, match="unknown kind 'agent'"):
        nf.Component(lambda: None, kind="agent")


def test_bad_retry_and_cache_arguments_are_config_errors():
    with pytest.raises(nf.ConfigError, match="retry="):
        nf.component(retry=True)(lambda: None)
    with pytest.raises(nf.ConfigError, match="retry="):
        nf.component(retry="3")(lambda: None)  # type: ignore[call-overload]
    with pytest.raises(nf.ConfigError, match="cache="):
        nf.component(cache="forever")(lambda: None)  # type: ignore[call-overload]
    with pytest.raises(nf.ConfigError, match="timeout_s must be > 0"):
        nf.component(timeout_s=-1)(lambda: None)


# --- outside a workflow --------------------------------------------------------


def test_component_outside_a_workflow_runs_and_records_a_one_span_trace():
    @nf.component
    def add(a: int, b: int) -> int:
        return a + b

    assert add(2, 3) == 5
    run = last_run()
    assert run.status() == "succeeded"
    assert run.result() == 5
    trace = run.trace()
    assert trace.status == "succeeded"
    span = only_span(run)
    assert (span["name"], span["kind"], span["status"]) == ("add", "component", "ok")
    assert span["input"] == {"a": 2, "b": 3}
    assert span["output"] == 5


def test_async_component_outside_a_workflow_records_a_trace():
    @nf.component
    async def shout(text: str) -> str:
        await asyncio.sleep(0)
        return text.upper()

    assert asyncio.run(shout("hi")) == "HI"
    span = only_span()
    assert (span["name"], span["status"], span["output"]) == ("shout", "ok", "HI")


def test_failing_component_outside_a_workflow_marks_run_failed_and_reraises():
    @nf.component
    def broken() -> None:
        raise ValueError("nope")

    with pytest.raises(ValueError, match="nope"):
        broken()
    run = last_run()
    assert run.status() == "failed"
    with pytest.raises(ValueError):
        run.result()
    span = only_span(run)
    assert span["status"] == "error"
    assert span["error"] == "ValueError: nope"


# --- with_* is immutable -------------------------------------------------------


def test_each_with_method_returns_a_new_component_and_leaves_the_original_unchanged():
    @nf.component
    def base(x: int) -> int:
        return x

    retried = base.with_retry(5)
    cached = base.with_cache(ttl_s=10)
    timed = base.with_timeout(2)
    for derived in (retried, cached, timed):
        assert derived is not base
        assert isinstance(derived, nf.Component)
    assert (base.retry, base.cache, base.timeout_s) == (None, None, None)
    assert retried.retry is not None and retried.retry.attempts == 5 and retried.cache is None
    assert cached.cache is not None and cached.cache.ttl_s == 10 and cached.retry is None
    assert timed.timeout_s == 2 and timed.retry is None
    chained = base.with_retry(2).with_cache().with_timeout(1)
    assert chained.retry is not None and chained.cache is not None and chained.timeout_s == 1


def test_with_methods_on_a_workflow_return_a_workflow():
    @nf.workflow
    def flow() -> int:
        return 1

    assert isinstance(flow.with_retry(2), nf.Workflow)
    assert flow.with_retry(2).kind == "workflow"


# --- retry -----------------------------------------------------------------------


def flaky(fail_times: int, error: type[BaseException] = ValueError):
    calls: list[int] = []

    @nf.component
    def unstable() -> str:
        calls.append(1)
        if len(calls) <= fail_times:
            raise error(f"failure {len(calls)}")
        return "ok"

    return unstable, calls


def test_retry_retries_listed_exceptions_until_success(testing):
    fn, calls = flaky(2)
    assert fn.with_retry(3, on=(ValueError,))() == "ok"
    assert len(calls) == 3
    span = only_span()
    assert (span["status"], span["attempts"]) == ("ok", 3)


def test_retry_counts_subclasses_of_listed_exceptions(testing):
    class Throttled(ConnectionError):
        pass

    fn, calls = flaky(1, Throttled)
    assert fn.with_retry(2, on=OSError)() == "ok"
    assert len(calls) == 2


def test_retry_does_not_retry_exceptions_not_listed(testing):
    fn, calls = flaky(5, KeyError)
    with pytest.raises(KeyError):
        fn.with_retry(4, on=(ValueError,))()
    assert len(calls) == 1
    assert only_span()["attempts"] == 1
    assert events_of("span.retry") == []


def test_each_failed_attempt_is_a_span_retry_event(testing):
    fn, _ = flaky(2)
    fn.with_retry(3, on=ValueError)()
    retries = events_of("span.retry")
    assert [e["attempt"] for e in retries] == [1, 2]
    assert [e["error"] for e in retries] == ["ValueError: failure 1", "ValueError: failure 2"]
    assert all(e["error_type"] == "ValueError" for e in retries)


def test_after_the_last_attempt_the_users_own_exception_is_reraised_traceback_intact(testing):
    calls: list[int] = []

    @nf.component
    def always_fails() -> None:
        calls.append(1)
        raise ValueError(f"attempt {len(calls)}")

    with pytest.raises(ValueError) as info:
        always_fails.with_retry(3, on=ValueError)()
    assert type(info.value) is ValueError
    assert str(info.value) == "attempt 3"
    last = traceback.extract_tb(info.value.__traceback__)[-1]
    assert last.name == "always_fails"
    assert last.filename == __file__
    span = only_span()
    assert (span["status"], span["attempts"], span["error"]) == (
        "error",
        3,
        "ValueError: attempt 3",
    )
    assert last_run().status() == "failed"


def test_async_retry_reraises_the_users_exception_with_its_traceback(testing):
    calls: list[int] = []

    @nf.component
    async def always_fails() -> None:
        calls.append(1)
        raise RuntimeError("async boom")

    with pytest.raises(RuntimeError, match="async boom") as info:
        asyncio.run(always_fails.with_retry(2, on=RuntimeError)())
    assert len(calls) == 2
    assert traceback.extract_tb(info.value.__traceback__)[-1].name == "always_fails"
    assert only_span()["attempts"] == 2


def test_async_retry_succeeds_after_failures(testing):
    calls: list[int] = []

    @nf.component
    async def unstable() -> int:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("flap")
        return len(calls)

    assert asyncio.run(unstable.with_retry(3, on=ConnectionError)()) == 3
    assert only_span()["attempts"] == 3


def test_set_testing_removes_backoff_sleeps():
    nf.set_testing(True)
    fn, _ = flaky(2)
    started = time.perf_counter()
    fn.with_retry(3, backoff="fixed", initial_s=5, on=ValueError)()
    assert time.perf_counter() - started < 1
    assert [e["delay_s"] for e in events_of("span.retry")] == [0, 0]


def test_without_testing_fixed_backoff_sleeps_between_attempts():
    fn, _ = flaky(2)
    started = time.perf_counter()
    fn.with_retry(3, backoff="fixed", initial_s=0.03, jitter=0, on=ValueError)()
    assert time.perf_counter() - started >= 0.06
    assert [e["delay_s"] for e in events_of("span.retry")] == [0.03, 0.03]


def test_without_testing_exponential_backoff_doubles_up_to_the_cap():
    fn, _ = flaky(3)
    fn.with_retry(4, initial_s=0.01, max_s=0.03, jitter=0, on=ValueError)()
    assert [e["delay_s"] for e in events_of("span.retry")] == [0.01, 0.02, 0.03]


# --- cache ---------------------------------------------------------------------


def counted(**cache_options):
    calls: list[tuple[Any, ...]] = []

    @nf.component
    def compute(x, y=0):
        calls.append((x, y))
        return len(calls)  # the call number: a hit returns an earlier call's value

    return compute.with_cache(**cache_options), calls


def test_cache_hit_returns_stored_value_without_running_and_is_marked_cached():
    fn, calls = counted()
    assert fn(1, 2) == 1
    assert not only_span()["cached"]
    assert fn(1, 2) == 1
    assert calls == [(1, 2)]
    span = only_span()
    assert (span["cached"], span["status"], span["output"]) == (True, "ok", 1)


def test_cache_hits_inside_a_workflow_are_marked_cached_in_the_spans():
    fn, calls = counted()

    @nf.workflow
    def flow() -> int:
        return fn(1) + fn(1) + fn(2)

    assert flow() == 1 + 1 + 2
    spans = last_run().trace().spans
    children = spans[spans["name"] == "compute"]
    assert list(children["cached"]) == [False, True, False]
    assert len(calls) == 2


def test_cache_key_covers_arguments():
    fn, calls = counted()
    fn(1)
    fn(2)
    fn(1, y=1)
    fn(x=1)
    assert calls == [(1, 0), (2, 0), (1, 1)]


def test_cache_key_tells_dict_keys_of_different_types_apart():
    fn, calls = counted()
    fn({1: "a"}, y={})
    fn({"1": "a"}, y={})
    fn({1: {"a": 1}, "1": {"b": 2}}, y={})
    assert len(calls) == 3


def test_cache_key_covers_the_component_name():
    def body(x):
        return x

    a = nf.component(name="a", cache=True)(body)
    b = nf.component(name="b", cache=True)(body)
    a(1)
    b(1)
    assert not only_span()["cached"]


def test_components_with_different_code_do_not_share_cache_entries():
    def make_v1():
        def step(x):
            return x + 1

        return nf.component(cache=True)(step)

    def make_v2():
        def step(x):
            return x + 2

        return nf.component(cache=True)(step)

    v1, v2 = make_v1(), make_v2()
    assert v1.name == v2.name
    assert v1(1) == 2
    assert v2(1) == 3
    assert not only_span()["cached"]


def test_same_code_redefined_shares_cache_entries():
    def make():
        def step(x):
            return x * 2

        return nf.component(cache=True)(step)

    make()(5)
    make()(5)
    assert only_span()["cached"]


def test_unhashable_argument_raises_cache_key_error_naming_the_argument():
    fn, calls = counted()
    with pytest.raises(nf.CacheKeyError, match=r"argument 'y' \(object\)") as info:
        fn(1, y=object())
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, nf.NbflowError)
    assert "ignore=" in str(info.value)
    assert calls == []


def test_unhashable_item_inside_a_list_is_named_with_its_index():
    fn, _ = counted()
    with pytest.raises(nf.CacheKeyError, match=r"argument 'x\[1\]'"):
        fn([1, threading.Lock()])


def test_cache_accepts_dataclasses_sets_bytes_and_nested_containers():
    @dataclass
    class Query:
        text: str
        k: int

    fn, calls = counted()
    fn(Query("a", 1), y={"tags": {"x", "y"}, "raw": b"\x00"})
    fn(Query("a", 1), y={"raw": b"\x00", "tags": {"y", "x"}})
    fn(Query("a", 2), y={"raw": b"\x00", "tags": {"y", "x"}})
    assert len(calls) == 2


def test_cache_ignore_leaves_arguments_out_of_the_key():
    fn, calls = counted(ignore=("y",))
    fn(1, y=object())
    fn(1, y=object())
    assert len(calls) == 1


def test_cache_ignore_accepts_a_single_name():
    fn, calls = counted(ignore="y")
    assert fn.cache is not None and fn.cache.ignore == ("y",)
    fn(1, y=1)
    fn(1, y=2)
    assert len(calls) == 1


def test_cache_key_function_builds_the_key():
    fn, calls = counted(key=lambda x, y=0: x % 10)
    fn(1, y=object())
    assert fn(11, y=object()) == 1
    assert len(calls) == 1


def test_cache_key_function_returning_unhashable_value_is_a_cache_key_error():
    fn, _ = counted(key=lambda x, y=0: object())
    with pytest.raises(nf.CacheKeyError, match="compute cache key"):
        fn(1)


def test_cache_entries_expire_after_ttl():
    fn, calls = counted(ttl_s=0.05)
    fn(1)
    fn(1)
    assert len(calls) == 1
    time.sleep(0.08)
    fn(1)
    assert len(calls) == 2
    assert not only_span()["cached"]


def test_async_component_cache_hit_skips_the_function():
    calls: list[int] = []

    @nf.component(cache=True)
    async def fetch(x: int) -> int:
        calls.append(x)
        return x

    assert asyncio.run(fetch(1)) == 1
    assert asyncio.run(fetch(1)) == 1
    assert calls == [1]
    assert only_span()["cached"]


def test_errors_are_not_cached():
    fn, calls = flaky(1)
    cached = fn.with_cache()
    with pytest.raises(ValueError):
        cached()
    assert cached() == "ok"
    assert len(calls) == 2


# --- timeout -------------------------------------------------------------------


def test_sync_timeout_raises_step_timeout_an_nbflow_error_and_timeout_error():
    release = threading.Event()

    @nf.component(timeout_s=0.05)
    def stuck() -> None:
        release.wait(5)

    try:
        with pytest.raises(nf.StepTimeout, match=r"stuck timed out after 0.05 s") as info:
            stuck()
    finally:
        release.set()
    assert isinstance(info.value, nf.NbflowError)
    assert isinstance(info.value, TimeoutError)
    span = only_span()
    assert span["status"] == "error"
    assert "StepTimeout" in span["error"]


def test_async_timeout_raises_step_timeout():
    @nf.component
    async def stuck() -> None:
        await asyncio.sleep(5)

    with pytest.raises(nf.StepTimeout, match="stuck timed out"):
        asyncio.run(stuck.with_timeout(0.05)())
    assert only_span()["status"] == "error"


def test_sync_component_within_its_timeout_returns_its_value():
    @nf.component(timeout_s=5)
    def quick(x: int) -> int:
        return x + 1

    assert quick(1) == 2


def test_sync_timeout_reraises_the_functions_own_exception():
    @nf.component(timeout_s=5)
    def broken() -> None:
        raise KeyError("k")

    with pytest.raises(KeyError) as info:
        broken()
    assert traceback.extract_tb(info.value.__traceback__)[-1].name == "broken"


def test_async_users_own_timeout_error_is_not_turned_into_step_timeout():
    @nf.component(timeout_s=5)
    async def own() -> None:
        raise TimeoutError("mine")

    with pytest.raises(TimeoutError, match="mine") as info:
        asyncio.run(own())
    assert not isinstance(info.value, nf.StepTimeout)


def test_retry_on_timeout_error_retries_a_sync_timeout(testing):
    release = threading.Event()
    calls: list[int] = []

    @nf.component
    def slow_then_fast() -> str:
        calls.append(1)
        if len(calls) == 1:
            release.wait(5)
        return "done"

    try:
        result = slow_then_fast.with_timeout(0.05).with_retry(2, on=TimeoutError)()
    finally:
        release.set()
    assert result == "done"
    span = only_span()
    assert (span["attempts"], span["status"]) == (2, "ok")
    assert "StepTimeout" in events_of("span.retry")[0]["error"]


def test_retry_on_timeout_error_retries_an_async_timeout(testing):
    calls: list[int] = []

    @nf.component
    async def slow_then_fast() -> str:
        calls.append(1)
        if len(calls) == 1:
            await asyncio.sleep(5)
        return "done"

    wrapped = slow_then_fast.with_retry(2, on=TimeoutError).with_timeout(0.05)
    assert asyncio.run(wrapped()) == "done"
    assert only_span()["attempts"] == 2


def test_with_timeout_rejects_missing_zero_and_negative_values():
    @nf.component
    def fn() -> None:
        pass

    for bad in (None, 0, -1):
        with pytest.raises(nf.ConfigError, match=r"timeout|seconds"):
            fn.with_timeout(bad)  # type: ignore[arg-type]
    with pytest.raises(nf.ConfigError, match="number of seconds"):
        fn.with_timeout("5")  # type: ignore[arg-type]


# --- recorded inputs and outputs ------------------------------------------------


def test_inputs_and_outputs_are_recorded_by_parameter_name():
    @nf.component
    def greet(name: str, punctuation: str = "!") -> dict[str, str]:
        return {"greeting": f"hi {name}{punctuation}"}

    greet("ada", punctuation="?")
    span = only_span()
    assert span["input"] == {"name": "ada", "punctuation": "?"}
    assert span["output"] == {"greeting": "hi ada?"}


def test_long_inputs_and_outputs_are_truncated_past_max_preview_chars():
    extra = 500

    @nf.component
    def echo(text: str) -> str:
        return text

    echo("x" * (MAX_PREVIEW_CHARS + extra))
    span = only_span()
    for recorded in (span["input"]["text"], span["output"]):
        assert recorded == "x" * MAX_PREVIEW_CHARS + f"… [+{extra} chars]"
    assert all(len(json.dumps(e)) < 3 * MAX_PREVIEW_CHARS for e in last_run().events())


def test_long_lists_are_cut_to_a_preview():
    @nf.component
    def total(items: list[int]) -> int:
        return sum(items)

    total(list(range(80)))
    recorded = only_span()["input"]["items"]
    assert recorded[:3] == [0, 1, 2]
    assert recorded[-1] == "… +30 more"


def test_objects_are_recorded_by_repr():
    class Thing:
        def __repr__(self) -> str:
            return "<Thing 7>"

    @nf.component
    def use(thing: Thing) -> Thing:
        return thing

    use(Thing())
    span = only_span()
    assert (span["input"], span["output"]) == ({"thing": "<Thing 7>"}, "<Thing 7>")


def run_with_secret(secret: str, positional: bool):
    @nf.component(redact=("api_key",))
    def call_model(prompt: str, api_key: str) -> dict[str, str]:
        return {"text": prompt.upper(), "api_key": api_key}

    @nf.workflow(redact=("api_key",))
    def flow(prompt: str, api_key: str) -> str:
        return call_model(prompt, api_key) if positional else call_model(prompt, api_key=api_key)

    flow("hello", secret) if positional else flow("hello", api_key=secret)
    return last_run()


@pytest.mark.parametrize("positional", [True, False], ids=["positional", "keyword"])
def test_redacted_arguments_never_reach_the_event_log(positional):
    secret = "sk-SUPERSECRET-123"
    run = run_with_secret(secret, positional)
    events = list(run.events())
    assert events
    for event in events:
        assert secret not in json.dumps(event, default=str), event["type"]
    assert not run.trace().events["data"].str.contains(secret).any()
    spans = run.trace().spans
    assert all(row["api_key"] == REDACTED for row in spans["input"])


def test_redact_accepts_a_single_name():
    @nf.component(redact="token")
    def use(token: str) -> int:
        return len(token)

    use("abc-secret")
    assert only_span()["input"] == {"token": REDACTED}


def test_a_shipped_component_keeps_its_policies_and_rebuilds_its_signature() -> None:
    import cloudpickle

    def scale(x: int, factor: int = 2) -> int:
        return x * factor

    comp = nf.component(scale).with_retry(4).with_timeout(9)
    blob = cloudpickle.dumps(comp)
    assert b"Parameter" not in blob, "the signature is rebuilt from the function, not shipped"
    back = cloudpickle.loads(blob)
    assert (back.retry, back.timeout_s, back.code_digest) == (
        comp.retry,
        comp.timeout_s,
        comp.code_digest,
    )
    assert back.positional_names == comp.positional_names == ("x", "factor")
    assert str(back.signature) == str(comp.signature)
    assert back(3) == 6


@pytest.mark.parametrize(
    ("decorator", "cls"), [(nf.component, nf.Component), (nf.workflow, nf.Workflow)]
)
def test_decorators_make_their_class_bare_or_with_options(decorator, cls):
    def double(x: int) -> int:
        return 2 * x

    bare = decorator(double)
    named = decorator(name="twice", retry=2, timeout_s=5)(double)
    assert type(bare) is cls and type(named) is cls
    assert (bare.name, named.name) == ("double", "twice")
    assert (bare.retry, named.retry.attempts, named.timeout_s) == (None, 2, 5.0)
    assert bare(3) == named(3) == 6
