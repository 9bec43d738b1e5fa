"""What the ``nbflow`` command accepts: argument types that refuse bad values with a
usage error, and the Redis URL a command talks to."""

from __future__ import annotations

import argparse
import os
from urllib.parse import urlparse

from .constants import ENV_REDIS_URL
from .errors import ConfigError

# The schemes redis-py connects with (a Cluster is `redis://...?cluster=1`).
REDIS_SCHEMES = ("redis", "rediss", "unix")


def positive_int(text: str) -> int:
    return _whole(text, minimum=1, wanted="a whole number of 1 or more")


def non_negative_int(text: str) -> int:
    return _whole(text, minimum=0, wanted="a whole number of 0 or more")


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a number of 0 or more, not {text!r}")
    return value


def port(text: str) -> int:
    return _whole(text, minimum=1, maximum=65535, wanted="a port number from 1 to 65535")


def _whole(text: str, *, minimum: int, wanted: str, maximum: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {wanted}, not {text!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        raise argparse.ArgumentTypeError(f"expected {wanted}, not {text!r}")
    return value


def cursor(text: str) -> str:
    from .runtime.listing import decode_cursor

    try:
        decode_cursor(text)
    except ValueError as problem:
        raise argparse.ArgumentTypeError(str(problem)) from None
    return text


def redis_url(text: str) -> str:
    problem = url_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def url_problem(url: str) -> str | None:
    scheme = urlparse(url).scheme
    if scheme in REDIS_SCHEMES:
        return None
    schemes = ", ".join(f"{s}://" for s in REDIS_SCHEMES)
    return f"{url!r} is not a Redis URL (one starts with {schemes}; e.g. redis://localhost:6379/0)"


def given_url(args: argparse.Namespace) -> str | None:
    """``--redis``, else ``NBFLOW_REDIS_URL``; None means the embedded runtime."""
    url: str | None = getattr(args, "redis", None)
    if url:
        return url
    configured = os.environ.get(ENV_REDIS_URL)
    if not configured:
        return None
    problem = url_problem(configured)
    if problem:
        raise ConfigError(f"${ENV_REDIS_URL}: {problem}")
    return configured
