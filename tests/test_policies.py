"""Retry, cache and time-out policies: validation and back-off arithmetic."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

import nbflow as nf
from nbflow._policies import Backoff, CachePolicy, RetryPolicy, backoff_s, seconds, timeout


def noop() -> None:
    pass


# --- back-off --------------------------------------------------------------------


def test_fixed_backoff_waits_initial_s_every_time():
    policy = RetryPolicy.build(attempts=5, backoff="fixed", initial_s=0.25, jitter=0)
    assert [policy.delay_s(a) for a in (1, 2, 3, 4)] == [0.25, 0.25, 0.25, 0.25]


def test_exponential_backoff_doubles_from_initial_s():
    policy = RetryPolicy.build(attempts=6, initial_s=0.5, max_s=100, jitter=0)
    assert [policy.delay_s(a) for a in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 4.0, 8.0]


def test_exponential_backoff_is_capped_at_max_s():
    policy = RetryPolicy.build(attempts=10, initial_s=1, max_s=5, jitter=0)
    assert [policy.delay_s(a) for a in (1, 2, 3, 4, 9)] == [1, 2, 4, 5, 5]


def test_jitter_spreads_delays_within_the_fraction():
    policy = RetryPolicy.build(attempts=3, backoff="fixed", initial_s=1, max_s=10, jitter=0.2)
    delays = [policy.delay_s(1) for _ in range(200)]
    assert all(0.8 <= d <= 1.2 for d in delays)
    assert len(set(delays)) > 1


def test_jitter_never_pushes_a_delay_past_max_s():
    policy = RetryPolicy.build(attempts=10, initial_s=1, max_s=2, jitter=0.5)
    assert all(policy.delay_s(8) <= 2 for _ in range(200))


def test_max_s_below_initial_s_is_raised_to_initial_s():
    policy = RetryPolicy.build(initial_s=3, max_s=1, jitter=0)
    assert policy.max_s == 3
    assert policy.delay_s(1) == 3


@pytest.fixture
def testing_mode():
    nf.set_testing(True)
    yield
    nf.set_testing(False)


def test_engine_first_attempt_waits_initial_s():
    assert backoff_s(1, initial_s=0.3, max_s=10, jitter=0) == 0.3
    assert backoff_s(1, initial_s=0.3, max_s=10, jitter=0, exponential=False) == 0.3


def test_engine_reaches_the_cap_and_stays_there_even_for_huge_attempts():
    curve = [backoff_s(a, initial_s=1, max_s=8, jitter=0) for a in (3, 4, 5, 10**6)]
    assert curve == [4, 8, 8, 8]


def test_engine_jitter_stays_within_plus_minus_the_fraction():
    delays = [backoff_s(2, initial_s=1, max_s=100, jitter=0.25) for _ in range(500)]
    assert all(1.5 <= d <= 2.5 for d in delays)
    assert min(delays) < 2 < max(delays)


def test_engine_downward_jitter_never_exceeds_the_curve():
    delays = [backoff_s(2, initial_s=1, max_s=100, jitter=0.25, downward=True) for _ in range(500)]
    assert all(1.5 <= d <= 2 for d in delays)
    assert len(set(delays)) > 1


def test_engine_jitter_at_the_cap_never_exceeds_max_s():
    assert all(backoff_s(30, initial_s=1, max_s=5, jitter=1) <= 5 for _ in range(500))


@pytest.mark.parametrize("attempt", [0, -1, True, 1.0])
def test_engine_attempts_count_from_one(attempt):
    with pytest.raises(ValueError, match="attempt counts from 1"):
        backoff_s(attempt, initial_s=1, max_s=2)


def test_engine_is_zero_in_testing_mode_for_policies_and_llm_retries(testing_mode):
    from nbflow.llm import Retry

    assert backoff_s(3, initial_s=1, max_s=10) == 0.0
    assert RetryPolicy.build(initial_s=2).delay_s(1) == 0.0
    assert Retry(initial_s=2).delay_s(1, _connection_error()) == 0.0


def test_engine_can_keep_its_waits_in_testing_mode_for_reconnect_loops(testing_mode):
    assert backoff_s(2, initial_s=1, max_s=10, jitter=0, honour_testing=False) == 2.0
    retry = Backoff(initial_s=0.1, max_s=0.4)
    assert [retry.next_delay() for _ in range(4)] == [0.1, 0.2, 0.4, 0.4]
    retry.reset()
    assert retry.next_delay() == 0.1


def test_llm_retry_jitters_downward_and_stops_after_max_retries():
    from nbflow.llm import Retry

    retry = Retry(max_retries=2, initial_s=1, max_s=10, jitter=0.5)
    error = _connection_error()
    assert all(0.5 <= (retry.delay_s(1, error) or 0) <= 1 for _ in range(200))
    assert all(1 <= (retry.delay_s(2, error) or 0) <= 2 for _ in range(200))
    assert retry.delay_s(3, error) is None


def _connection_error() -> BaseException:
    import httpx
    import openai

    # (the SDK's type names the httpx it ships with; any httpx.Request works)
    request: Any = httpx.Request("POST", "http://127.0.0.1/v1")
    return openai.APIConnectionError(request=request)


def test_time_arguments_accept_timedelta():
    policy = RetryPolicy.build(initial_s=timedelta(milliseconds=250), max_s=timedelta(seconds=2))
    assert (policy.initial_s, policy.max_s) == (0.25, 2.0)
    assert seconds(timedelta(minutes=1), "ttl_s") == 60.0
    assert CachePolicy.build(ttl_s=timedelta(hours=1)).ttl_s == 3600.0
    assert nf.component(noop).with_timeout(timedelta(seconds=3)).timeout_s == 3.0


def test_a_single_exception_class_becomes_a_tuple():
    assert RetryPolicy.build(on=KeyError).on == (KeyError,)


def test_retries_matches_listed_classes_and_their_subclasses():
    policy = RetryPolicy.build(on=(OSError, ValueError))
    assert policy.retries(ConnectionError())
    assert policy.retries(ValueError())
    assert not policy.retries(KeyError())


# --- validation --------------------------------------------------------------------


@pytest.mark.parametrize("attempts", [0, -1, 1.5, "3", True, None])
def test_attempts_must_be_a_positive_integer(attempts):
    with pytest.raises(nf.ConfigError, match="attempts must be an integer >= 1"):
        nf.component(noop).with_retry(attempts)


def test_unknown_backoff_is_a_config_error_naming_it():
    with pytest.raises(
        nf.ConfigError, match="unknown backoff 'linear'; use one of exponential, fixed"
    ):
        nf.component(noop).with_retry(3, backoff="linear")


@pytest.mark.parametrize("jitter", [-0.1, 1.5, "0.1"])
def test_jitter_out_of_range_is_a_config_error(jitter):
    with pytest.raises(nf.ConfigError, match="jitter must be a fraction between 0 and 1"):
        nf.component(noop).with_retry(3, jitter=jitter)


@pytest.mark.parametrize(
    ("on", "named"),
    [
        ("ValueError", "'ValueError'"),
        (int, "<class 'int'>"),
        ((ValueError, 3), "3"),
        (None, "None"),
    ],
)
def test_on_must_be_exception_classes(on, named):
    with pytest.raises(nf.ConfigError, match=f"on= takes exception classes, got {named}"):
        nf.component(noop).with_retry(3, on=on)


@pytest.mark.parametrize("option", ["initial_s", "max_s"])
def test_negative_backoff_times_are_config_errors(option):
    with pytest.raises(nf.ConfigError, match=f"{option} must be >= 0"):
        options: dict[str, Any] = {option: -1}
        nf.component(noop).with_retry(3, **options)


@pytest.mark.parametrize("ttl_s", [0, -5])
def test_cache_ttl_must_be_positive(ttl_s):
    with pytest.raises(nf.ConfigError, match="ttl_s must be > 0"):
        nf.component(noop).with_cache(ttl_s)


def test_cache_key_must_be_callable():
    with pytest.raises(nf.ConfigError, match="cache key= must be a callable"):
        nf.component(noop).with_cache(key="by-url")  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0, -0.5, "10", True])
def test_timeouts_must_be_positive_numbers(value):
    with pytest.raises(nf.ConfigError, match="timeout_s must be"):
        timeout(value)


def test_config_errors_are_nbflow_errors_and_value_errors():
    with pytest.raises(ValueError):
        nf.component(noop).with_retry(0)
    with pytest.raises(nf.NbflowError):
        nf.component(noop).with_retry(0)


def test_policies_are_immutable():
    policy = RetryPolicy.build()
    with pytest.raises(AttributeError):
        policy.attempts = 10  # type: ignore[misc]


def test_set_testing_is_a_switch():
    from nbflow._testing import is_testing

    try:
        nf.set_testing(True)
        assert is_testing()
        nf.set_testing(False)
        assert not is_testing()
        nf.set_testing()
        assert is_testing()
    finally:
        nf.set_testing(False)


def test_retry_defaults_have_one_home_in_constants():
    from nbflow import constants as c
    from nbflow.llm import Retry

    expected = RetryPolicy(
        c.RETRY_ATTEMPTS, c.RETRY_BACKOFF, c.RETRY_INITIAL_S, c.RETRY_MAX_S, c.RETRY_JITTER
    )
    assert nf.component(noop).with_retry().retry == expected
    assert nf.component(noop, retry={}).retry == expected
    assert RetryPolicy.build() == RetryPolicy() == expected
    llm = Retry()
    assert (llm.max_retries, llm.initial_s, llm.max_s, llm.jitter, llm.max_retry_after_s) == (
        c.LLM_MAX_RETRIES,
        c.LLM_RETRY_INITIAL_S,
        c.LLM_RETRY_MAX_S,
        c.LLM_RETRY_JITTER,
        c.LLM_MAX_RETRY_AFTER_S,
    )
