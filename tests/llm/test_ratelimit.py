"""Client-side rate limits: token buckets in-process and in Redis, shared by worker processes."""

from __future__ import annotations

import time
from typing import Any

import pytest
from openai.types.chat import ChatCompletionMessageParam

import nbflow as nf
from nbflow import constants as c
from nbflow.errors import ConfigError
from nbflow.llm import RateLimit
from nbflow.llm.offline import OfflineServer
from nbflow.llm.ratelimit import LocalLimiter, RedisLimiter, current_limiter, limit_for

from ..conftest import last_run

MODEL = "gpt-4o-mini"
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Count the requests"}]


def within_bucket(times: list[float], quota: float, window_s: float, slack: int = 2) -> bool:
    """Over every stretch of time, at most quota * (1 + stretch / window) calls (plus slack)."""
    times = sorted(times)
    return all(
        j - i + 1 <= quota * (1 + (times[j] - times[i]) / window_s) + slack
        for i in range(len(times))
        for j in range(i, len(times))
    )


@pytest.mark.parametrize("make", [LocalLimiter, "redis"], ids=["local", "redis"])
def test_a_bucket_admits_one_windows_quota_then_refills(make: Any, request: Any) -> None:
    limiter = RedisLimiter(request.getfixturevalue("runtime").redis) if make == "redis" else make()
    limit = RateLimit(requests_per_minute=5, window_s=1.0)
    assert [limiter.reserve("p/m", limit, 0) for _ in range(5)] == [0.0] * 5
    wait = limiter.reserve("p/m", limit, 0)
    assert 0.1 < wait <= 0.21, "one request's worth of refill: a fifth of the window"
    time.sleep(wait + 0.01)
    assert limiter.reserve("p/m", limit, 0) == 0.0
    assert limiter.reserve("other/m", limit, 0) == 0.0, "each provider and model has its own bucket"


@pytest.mark.parametrize("make", [LocalLimiter, "redis"], ids=["local", "redis"])
def test_tokens_are_charged_as_estimated_then_settled_to_real_usage(
    make: Any, request: Any
) -> None:
    limiter = RedisLimiter(request.getfixturevalue("runtime").redis) if make == "redis" else make()
    limit = RateLimit(tokens_per_minute=1000, window_s=60)
    assert limiter.reserve("p/m", limit, 600) == 0.0
    assert limiter.reserve("p/m", limit, 600) > 0, "400 left, 600 asked"
    limiter.settle("p/m", limit, -300)  # the call used 300 fewer tokens than estimated
    assert limiter.reserve("p/m", limit, 600) == 0.0
    assert limiter.reserve("big/m", limit, 5000) == 0.0, (
        "a call over the quota runs on a full bucket"
    )
    assert limiter.reserve("big/m", limit, 1) > 60, "and leaves a debt"


def test_a_limited_client_queues_calls_instead_of_failing(server: OfflineServer) -> None:
    limit = RateLimit(requests_per_minute=4, window_s=0.4)  # 10 per second, 4 at once
    done: list[float] = []
    with nf.openai.OpenAI(base_url=server.base_url, api_key="k", rate_limit=limit) as client:

        @nf.workflow
        def burst() -> None:
            for _ in range(12):
                client.chat.completions.create(model=MODEL, messages=MESSAGES)
                done.append(time.monotonic())

        started = time.monotonic()
        burst()
    assert time.monotonic() - started >= 0.7, "8 calls past the first 4, at 10 per second"
    assert within_bucket(done, 4, 0.4)
    waited = [
        s.attrs.get("nbflow.ratelimit.wait_ms", 0) for s in last_run().trace().state.spans.values()
    ]
    assert sum(1 for w in waited if w > 0) >= 6
    assert server.stats()["faults"]["429"] == 0


def test_limits_can_differ_by_model() -> None:
    fast, slow = RateLimit(requests_per_minute=1000), RateLimit(requests_per_minute=10)
    limits = {"gpt-4o-mini": fast, "*": slow}
    assert limit_for(limits, "gpt-4o-mini") is fast and limit_for(limits, "o3") is slow
    assert limit_for(fast, "anything") is fast and limit_for(None, "x") is None
    with pytest.raises(ConfigError):
        RateLimit(requests_per_minute=0)


def test_buckets_live_in_redis_when_a_runtime_is_connected(runtime, server, r) -> None:
    assert isinstance(current_limiter(), RedisLimiter)
    limit = RateLimit(requests_per_minute=100)
    with nf.openai.OpenAI(
        base_url=server.base_url, api_key="k", rate_limit=limit, provider_name="p"
    ) as client:
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert r.exists(c.RATE_KEY.format(scope=f"p/{MODEL}"))


def test_buckets_live_in_this_process_without_a_runtime() -> None:
    assert isinstance(current_limiter(), LocalLimiter)


@pytest.mark.slow
def test_two_worker_processes_share_one_limit_through_redis(
    runtime, llm_worker_process, server
) -> None:
    quota, window_s, calls = 8, 1.0, 16
    for _ in range(2):
        llm_worker_process("--concurrency", "1")
    deadline = time.monotonic() + 30
    while len(runtime.workers()) < 2:
        assert time.monotonic() < deadline, "the worker processes did not start"
        time.sleep(0.1)
    inputs = {"base_url": server.base_url, "calls": calls, "rpm": quota, "window_s": window_s}
    runs = [runtime.start("burst", inputs) for _ in range(2)]
    results = [run.result(timeout_s=60) for run in runs]
    workers = {
        next(e["worker"] for e in run.events() if e["type"] == "run.started") for run in runs
    }
    assert len(workers) == 2, "each process ran one of the bursts"
    times = sorted(results[0] + results[1])
    assert times[-1] - times[0] >= (2 * calls - quota) / quota * window_s * 0.9
    assert within_bucket(times, quota, window_s)
    assert server.stats()["requests"]["chat.completions"] == 2 * calls
