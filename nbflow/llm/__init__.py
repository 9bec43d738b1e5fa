"""LLM calls: the traced OpenAI client, rate limits, fallbacks and the offline model.

``nf.openai`` is this module, so ``nf.openai.OpenAI(...)`` is the traced client.
Names are imported on first use: ``import nbflow.llm`` does not import the SDK.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nbflow.llm.client import (
        AsyncOpenAI,
        MissingCredentials,
        OpenAI,
        default_async_client,
        default_client,
        offline_server,
    )
    from nbflow.llm.fallback import Provider
    from nbflow.llm.offline import OfflineServer, serve_offline
    from nbflow.llm.pricing import PRICES, Price, estimate_cost, set_price
    from nbflow.llm.ratelimit import RateLimit
    from nbflow.llm.retry import Retry

_HOMES = {
    "AsyncOpenAI": "client",
    "MissingCredentials": "client",
    "OfflineServer": "offline",
    "OpenAI": "client",
    "PRICES": "pricing",
    "Price": "pricing",
    "Provider": "fallback",
    "RateLimit": "ratelimit",
    "Retry": "retry",
    "default_async_client": "client",
    "default_client": "client",
    "estimate_cost": "pricing",
    "offline_server": "client",
    "serve_offline": "offline",
    "set_price": "pricing",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'nbflow.llm' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"nbflow.llm.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})


__all__ = [
    "PRICES",
    "AsyncOpenAI",
    "MissingCredentials",
    "OfflineServer",
    "OpenAI",
    "Price",
    "Provider",
    "RateLimit",
    "Retry",
    "default_async_client",
    "default_client",
    "estimate_cost",
    "offline_server",
    "serve_offline",
    "set_price",
]
