"""When an API call is tried again, and after how long.

Rate limits (429), server errors (5xx), time-outs (408), lock conflicts (409)
and connection errors are retried, unless the server says ``x-should-retry:
false``. A server's ``retry-after-ms`` or ``retry-after`` is honoured, with a
little jitter so that many waiting callers do not return in the same instant;
otherwise the delay grows exponentially. ``nf.set_testing()`` removes nbflow's
own back-off, never a wait the server asked for. Anything else, such as a bad
request, is raised at once as the SDK's own exception.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from dataclasses import dataclass
from typing import Any

from nbflow import constants as c
from nbflow._policies import backoff_s
from nbflow.errors import ConfigError

DEFAULT_MAX_RETRIES = c.LLM_MAX_RETRIES
RETRIED_STATUS = frozenset({408, 409, 429})


@dataclass(frozen=True)
class Retry:
    """Back-off for one provider; ``max_retries`` more attempts after the first."""

    max_retries: int = c.LLM_MAX_RETRIES
    initial_s: float = c.LLM_RETRY_INITIAL_S
    max_s: float = c.LLM_RETRY_MAX_S
    jitter: float = c.LLM_RETRY_JITTER
    max_retry_after_s: float = c.LLM_MAX_RETRY_AFTER_S

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int):
            raise ConfigError(f"max_retries must be an integer >= 0, got {self.max_retries!r}")
        if self.max_retries < 0 or min(self.initial_s, self.max_s, self.max_retry_after_s) < 0:
            raise ConfigError("max_retries and the back-off times must be >= 0")
        if not 0 <= self.jitter <= 1:
            raise ConfigError(f"jitter must be a fraction between 0 and 1, got {self.jitter!r}")

    def delay_s(self, retry: int, error: BaseException) -> float | None:
        """Seconds before retry number ``retry`` (from 1), or None: give up on this provider."""
        if retry > self.max_retries or not retryable(error):
            return None
        asked = retry_after_s(error)
        if asked is not None:
            if asked > self.max_retry_after_s:
                return None
            return float(asked * (1 + random.uniform(0, self.jitter / 2)))
        return backoff_s(
            retry, initial_s=self.initial_s, max_s=self.max_s, jitter=self.jitter, downward=True
        )


def retryable(error: BaseException) -> bool:
    """A transient failure: rate limited, server-side, or the connection itself."""
    import openai

    if isinstance(error, openai.APIConnectionError):  # time-outs included
        return True
    if not isinstance(error, openai.APIStatusError):
        return False
    should = error.response.headers.get("x-should-retry")
    if should in ("true", "false"):
        return should == "true"
    return error.status_code in RETRIED_STATUS or error.status_code >= 500


def retry_after_s(error: BaseException) -> float | None:
    """The wait a failed response asked for, in seconds, if it asked for one."""
    response: Any = getattr(error, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            seconds = _http_date_delay_s(value) if scale == 1.0 else math.nan
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    return None


def _http_date_delay_s(value: str) -> float:
    try:
        parsed = email.utils.parsedate_tz(value)
        when = email.utils.mktime_tz(parsed) if parsed else math.nan
    except (TypeError, ValueError, OverflowError):
        return math.nan
    return max(0.0, when - time.time())
