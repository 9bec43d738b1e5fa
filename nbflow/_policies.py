"""Retry, cache and time-out policies: validated once, immutable after."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from . import constants as c
from ._testing import is_testing
from .errors import ConfigError

Seconds = float | int | timedelta
BACKOFFS = ("exponential", "fixed")


def seconds(value: Seconds | None, what: str, *, allow_zero: bool = True) -> float | None:
    """A time argument as float seconds: a number or a timedelta, never negative."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{what} must be a number of seconds or a timedelta, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{what} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class RetryPolicy:
    """How a component is tried again: made by ``with_retry`` or ``retry=``."""

    attempts: int = c.RETRY_ATTEMPTS
    backoff: str = c.RETRY_BACKOFF
    initial_s: float = c.RETRY_INITIAL_S
    max_s: float = c.RETRY_MAX_S
    jitter: float = c.RETRY_JITTER
    on: tuple[type[BaseException], ...] = (Exception,)

    @classmethod
    def build(
        cls,
        *,
        attempts: int = c.RETRY_ATTEMPTS,
        backoff: str = c.RETRY_BACKOFF,
        initial_s: Seconds = c.RETRY_INITIAL_S,
        max_s: Seconds = c.RETRY_MAX_S,
        jitter: float = c.RETRY_JITTER,
        on: type[BaseException] | tuple[type[BaseException], ...] = (Exception,),
    ) -> RetryPolicy:
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ConfigError(f"attempts must be an integer >= 1, got {attempts!r}")
        if backoff not in BACKOFFS:
            raise ConfigError(f"unknown backoff {backoff!r}; use one of {', '.join(BACKOFFS)}")
        if not isinstance(jitter, int | float) or not 0 <= jitter <= 1:
            raise ConfigError(f"jitter must be a fraction between 0 and 1, got {jitter!r}")
        on_types = on if isinstance(on, tuple) else (on,)
        for exc in on_types:
            if not (isinstance(exc, type) and issubclass(exc, BaseException)):
                raise ConfigError(f"on= takes exception classes, got {exc!r}")
        initial = seconds(initial_s, "initial_s") or 0.0
        cap = seconds(max_s, "max_s") or 0.0
        return cls(attempts, backoff, initial, max(cap, initial), float(jitter), on_types)

    def retries(self, error: BaseException) -> bool:
        return isinstance(error, self.on)

    def delay_s(self, attempt: int) -> float:
        """Back-off before attempt ``attempt + 1`` (attempts count from 1)."""
        return backoff_s(
            attempt,
            initial_s=self.initial_s,
            max_s=self.max_s,
            jitter=self.jitter,
            exponential=self.backoff == "exponential",
        )


def backoff_s(
    attempt: int,
    *,
    initial_s: float,
    max_s: float,
    jitter: float = 0.1,
    exponential: bool = True,
    downward: bool = False,
    honour_testing: bool = True,
) -> float:
    """The one back-off nbflow waits by: the delay after try ``attempt`` (from 1).

    ``initial_s`` doubling per try (or fixed), capped at ``max_s``, spread by
    +/- ``jitter`` of itself (only downward with ``downward``, so that a delay
    never grows past its curve), never past ``max_s``. Under ``nf.set_testing()``
    it is 0, unless ``honour_testing`` is off: a loop waiting for a server to come
    back would only spin faster.
    """
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
        raise ValueError(f"attempt counts from 1, got {attempt!r}")
    if honour_testing and is_testing():
        return 0.0
    base = min(initial_s * 2.0 ** min(attempt - 1, 62) if exponential else initial_s, max_s)
    spread = random.uniform(-jitter, 0.0 if downward else jitter)
    return min(base * (1 + spread), max_s)


class Backoff:
    """Delays for a loop that retries until it succeeds (a lost server, a refused write).

    Such a loop is bounded by its patience, not by a count, so ``nf.set_testing()``
    leaves its waits alone. ``reset()`` after a success starts the curve again.
    """

    def __init__(
        self, *, initial_s: float, max_s: float, jitter: float = 0.0, exponential: bool = True
    ) -> None:
        self._initial_s = initial_s
        self._max_s = max_s
        self._jitter = jitter
        self._exponential = exponential
        self.attempt = 0

    def next_delay(self) -> float:
        self.attempt += 1
        return backoff_s(
            self.attempt,
            initial_s=self._initial_s,
            max_s=self._max_s,
            jitter=self._jitter,
            exponential=self._exponential,
            honour_testing=False,
        )

    def reset(self) -> None:
        self.attempt = 0


@dataclass(frozen=True)
class CachePolicy:
    ttl_s: float | None = None
    key: Callable[..., Any] | None = None
    ignore: tuple[str, ...] = ()

    @classmethod
    def build(
        cls,
        *,
        ttl_s: Seconds | None = None,
        key: Callable[..., Any] | None = None,
        ignore: tuple[str, ...] | list[str] = (),
    ) -> CachePolicy:
        if key is not None and not callable(key):
            raise ConfigError(
                f"cache key= must be a callable taking the component's arguments, got {key!r}"
            )
        names = (ignore,) if isinstance(ignore, str) else tuple(ignore)
        return cls(seconds(ttl_s, "ttl_s", allow_zero=False), key, names)


def timeout(value: Seconds | None) -> float | None:
    return seconds(value, "timeout_s", allow_zero=False)
