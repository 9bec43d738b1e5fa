"""Client-side rate limits: requests and tokens per minute, per provider and model.

A call waits here until its provider and model have room, so a burst of a
thousand runs queues instead of failing on 429s. Each limit is a token bucket
that holds one window's quota (a minute, unless ``window_s`` says otherwise) and
refills continuously: over any stretch of ``t`` seconds at most
``quota * (1 + t / window_s)`` is admitted. A call needing more tokens than a
whole window's quota waits for a full bucket and then runs, leaving a debt.

Token costs are estimated before the call (prompt characters / 4, plus the
requested output cap) and settled against the real usage afterwards.

Where the buckets live: in Redis when code runs on a worker, or in a process
connected to a runtime (``nf.connect``), so every worker shares one budget
through an atomic script; in this process otherwise.
"""

from __future__ import annotations

import asyncio
import math
import random
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from nbflow import _context as ctx
from nbflow import constants as c
from nbflow.errors import ConfigError, RunCancelled

MAX_SLEEP_S = 1.0  # waits are cut into slices so that a cancelled run stops waiting


@dataclass(frozen=True)
class RateLimit:
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    window_s: float = 60.0  # the length of a "minute": shorten it in tests

    def __post_init__(self) -> None:
        for name in ("requests_per_minute", "tokens_per_minute"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int | float) or value <= 0):
                raise ConfigError(f"{name} must be a number > 0 or None, got {value!r}")
        if not isinstance(self.window_s, int | float) or self.window_s <= 0:
            raise ConfigError(f"window_s must be a number of seconds > 0, got {self.window_s!r}")

    def dimensions(self, tokens: int) -> tuple[tuple[float, float, float], ...]:
        """(capacity, refill per second, cost) for requests then tokens; capacity 0 is no limit."""
        requests = self.requests_per_minute or 0.0
        token_quota = self.tokens_per_minute or 0.0
        return (
            (requests, requests / self.window_s, 1.0),
            (token_quota, token_quota / self.window_s, float(tokens)),
        )


RateLimits = RateLimit | Mapping[str, RateLimit] | None


def limit_for(limits: RateLimits, model: str) -> RateLimit | None:
    """One limit for every model, or a mapping by model name with ``"*"`` for the rest."""
    if limits is None or isinstance(limits, RateLimit):
        return limits
    return limits.get(model) or limits.get("*")


class Limiter(Protocol):
    def reserve(self, scope: str, limit: RateLimit, tokens: int) -> float:
        """Take room for one call now (0.0), or say how many seconds until there may be room."""
        ...

    def settle(self, scope: str, limit: RateLimit, extra_tokens: int) -> None:
        """Charge (or refund, when negative) the difference between real and estimated tokens."""
        ...


class LocalLimiter:
    """Buckets in this process: levels per dimension and the time they were measured."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[list[float], float]] = {}
        self._lock = threading.Lock()

    def reserve(self, scope: str, limit: RateLimit, tokens: int) -> float:
        dims = limit.dimensions(tokens)
        now = time.monotonic()
        with self._lock:
            saved, then = self._buckets.get(scope, ([cap for cap, _, _ in dims], now))
            pairs = list(zip(saved, dims, strict=True))
            levels = [min(cap, level + (now - then) * rate) for level, (cap, rate, _) in pairs]
            wait = max(_shortfall_s(level, dim) for level, dim in zip(levels, dims, strict=True))
            if wait > 0:
                return wait
            charged = [level - cost for level, (_, _, cost) in zip(levels, dims, strict=True)]
            self._buckets[scope] = (charged, now)
            return 0.0

    def settle(self, scope: str, limit: RateLimit, extra_tokens: int) -> None:
        cap = limit.tokens_per_minute
        with self._lock:
            if cap is None or scope not in self._buckets:
                return
            levels = self._buckets[scope][0]
            levels[1] = min(cap, levels[1] - extra_tokens)


def _shortfall_s(level: float, dim: tuple[float, float, float]) -> float:
    cap, rate, cost = dim
    need = min(cost, cap)
    return 0.0 if cap <= 0 or level >= need else (need - level) / rate


# KEYS: bucket  ARGV: capacity, refill per ms, cost (requests), then the same for tokens
# -> 0 when admitted (and charged), else the milliseconds to wait before asking again.
# Capacity 0 means no limit on that dimension. The server's clock is every worker's clock.
RESERVE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local saved = redis.call('HMGET', KEYS[1], 'r', 't', 'ts')
local elapsed = math.max(0, now - (tonumber(saved[3]) or now))
local levels, wait, ttl = {0, 0}, 0, 1000
for i = 1, 2 do
  local cap = tonumber(ARGV[3 * i - 2])
  local rate, cost = tonumber(ARGV[3 * i - 1]), tonumber(ARGV[3 * i])
  if cap > 0 then
    local level = math.min(cap, (tonumber(saved[i]) or cap) + elapsed * rate)
    local need = math.min(cost, cap)
    if level < need then wait = math.max(wait, (need - level) / rate) end
    levels[i] = level - cost
    ttl = math.max(ttl, (cap - levels[i]) / rate)
  end
end
if wait > 0 then return math.ceil(wait) end
redis.call('HSET', KEYS[1], 'r', tostring(levels[1]), 't', tostring(levels[2]), 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(ttl) + 1000)
return 0
"""

# KEYS: bucket  ARGV: token capacity, extra tokens to charge (negative refunds)
SETTLE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local level = tonumber(redis.call('HGET', KEYS[1], 't')) or 0
redis.call('HSET', KEYS[1], 't', tostring(math.min(tonumber(ARGV[1]), level - tonumber(ARGV[2]))))
return 1
"""


class RedisLimiter:
    """Buckets in Redis, shared by every process of a runtime; each check is one atomic script."""

    blocking = True  # each check is a round trip: async callers run it off the event loop

    def __init__(self, redis: Any) -> None:
        self.redis = redis

    def reserve(self, scope: str, limit: RateLimit, tokens: int) -> float:
        args: list[float] = []
        for cap, rate_per_s, cost in limit.dimensions(tokens):
            args += [cap, rate_per_s / 1000, cost]
        wait_ms = _script(self.redis, RESERVE)(keys=[_key(scope)], args=args, client=self.redis)
        return int(wait_ms) / 1000

    def settle(self, scope: str, limit: RateLimit, extra_tokens: int) -> None:
        if limit.tokens_per_minute is None or extra_tokens == 0:
            return
        args = [limit.tokens_per_minute, extra_tokens]
        _script(self.redis, SETTLE)(keys=[_key(scope)], args=args, client=self.redis)


_scripts: dict[str, Any] = {}
_local = LocalLimiter()


def _script(redis: Any, text: str) -> Any:
    # A Script only keeps its client for the encoder; each call names the client to use.
    script = _scripts.get(text)
    if script is None:
        script = _scripts[text] = redis.register_script(text)
    return script


def _key(scope: str) -> str:
    return c.RATE_KEY.format(scope=scope)


def current_limiter() -> LocalLimiter | RedisLimiter:
    redis = _runtime_redis()
    return _local if redis is None else RedisLimiter(redis)


def _runtime_redis() -> Any:
    frame = ctx.current()
    if frame is not None and frame.run.redis is not None:  # on a worker: share its connection
        return frame.run.redis
    client = sys.modules.get("nbflow.runtime.client")  # not imported: no runtime connected
    runtime = None if client is None else client.connected_runtime()
    return None if runtime is None else runtime.redis


@dataclass
class Admission:
    """Room taken for one call; ``settle`` once its real token count is known."""

    limiter: Limiter
    scope: str
    limit: RateLimit
    estimated_tokens: int
    waited_s: float

    def settle(self, used_tokens: int) -> None:
        extra = used_tokens - self.estimated_tokens
        if extra:
            self.limiter.settle(self.scope, self.limit, extra)


def admit(scope: str, limit: RateLimit, tokens: int) -> Admission:
    """Block until the call has room."""
    limiter = current_limiter()
    waited = 0.0
    while (wait := limiter.reserve(scope, limit, tokens)) > 0:
        nap = _nap_s(wait)
        time.sleep(nap)
        waited += nap
    return Admission(limiter, scope, limit, tokens, waited)


async def admit_async(scope: str, limit: RateLimit, tokens: int) -> Admission:
    limiter = current_limiter()
    waited = 0.0
    while (wait := await _reserve_async(limiter, scope, limit, tokens)) > 0:
        nap = _nap_s(wait)
        await asyncio.sleep(nap)
        waited += nap
    return Admission(limiter, scope, limit, tokens, waited)


async def _reserve_async(limiter: Limiter, scope: str, limit: RateLimit, tokens: int) -> float:
    if getattr(limiter, "blocking", False):
        return await asyncio.to_thread(limiter.reserve, scope, limit, tokens)
    return limiter.reserve(scope, limit, tokens)


def _nap_s(wait_s: float) -> float:
    frame = ctx.current()
    if frame is not None and frame.run.cancelled.is_set():
        raise RunCancelled(f"run {frame.run.run_id} was cancelled while waiting for a rate limit")
    # A little jitter keeps callers that were refused together from all asking again together.
    return min(wait_s * (1 + random.uniform(0, 0.1)) + 0.001, MAX_SLEEP_S)


def estimate_tokens(texts_chars: int, max_output_tokens: int | None) -> int:
    return math.ceil(texts_chars / 4) + (max_output_tokens or 0)
