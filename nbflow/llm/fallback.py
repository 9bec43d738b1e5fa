"""Ordered providers: the client's own first, then fallbacks for when one is down.

A provider is down for a call when its retries run out on a transient error
(rate limit, 5xx, connection). The next provider then gets the call, with its
own retries; the span names the provider that served it (``nbflow.provider``)
and marks a fallback (``nbflow.fallback``). Request errors (400, 401, 404, ...)
are not a provider being down and are raised at once.

A fallback with its own base URL but no key is sent a placeholder key, never
the first provider's: a key for one host is not shared with another.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

from nbflow.errors import ConfigError
from nbflow.llm.ratelimit import RateLimit, RateLimits, limit_for

NO_KEY = "no-key"  # what OpenAI-compatible servers that ignore keys are sent


@dataclass(frozen=True)
class Provider:
    """One fallback: where to send the call, with which key and model."""

    base_url: str | None = None  # None: the first provider's
    api_key: str | None = None
    model: str | None = None  # None: the model the caller asked for
    name: str | None = None  # shown in spans; default: the host
    rate_limit: RateLimits = None


@dataclass(frozen=True)
class Target:
    """A provider ready to be called: its SDK client, and how spans and limits name it."""

    name: str  # nbflow.provider, and the rate-limit scope
    system: str  # gen_ai.provider.name
    sdk: Any
    model: str | None
    rate_limit: RateLimits
    address: str | None
    port: int | None
    index: int = 0

    @cached_property
    def attrs(self) -> dict[str, Any]:
        """What every span served by this provider says about it."""
        attrs: dict[str, Any] = {"gen_ai.provider.name": self.system, "nbflow.provider": self.name}
        if self.address:
            attrs["server.address"] = self.address
        if self.port:
            attrs["server.port"] = self.port
        if self.index:
            attrs["nbflow.fallback"] = True
        return attrs

    def model_for(self, requested: str) -> str:
        return self.model or requested

    def limit(self, model: str) -> RateLimit | None:
        return limit_for(self.rate_limit, model)


def targets(
    sdk: Any, *, name: str | None, rate_limit: RateLimits, fallbacks: tuple[Provider, ...]
) -> tuple[Target, ...]:
    primary = _target(sdk, name=name, model=None, rate_limit=rate_limit, index=0)
    chain = [primary]
    for index, provider in enumerate(fallbacks, start=1):
        chain.append(
            _target(
                _client_for(sdk, provider),
                name=provider.name,
                model=provider.model,
                rate_limit=provider.rate_limit,
                index=index,
            )
        )
    return tuple(chain)


def _client_for(sdk: Any, provider: Provider) -> Any:
    options: dict[str, Any] = {"max_retries": 0}
    if provider.base_url is not None:
        options["base_url"] = provider.base_url
        options["api_key"] = provider.api_key or NO_KEY
    elif provider.api_key is not None:
        options["api_key"] = provider.api_key
    return sdk.copy(**options)


def _target(
    sdk: Any, *, name: str | None, model: str | None, rate_limit: RateLimits, index: int
) -> Target:
    url = urlsplit(str(sdk.base_url))
    host = url.hostname or ""
    netloc = f"{host}:{url.port}" if url.port else host
    return Target(
        name=name or netloc,
        system=_system(host) or name or netloc,
        sdk=sdk,
        model=model,
        rate_limit=rate_limit,
        address=host or None,
        port=url.port,
        index=index,
    )


def _system(host: str) -> str | None:
    """The OpenTelemetry provider name of the well-known hosts."""
    if host.endswith(".openai.azure.com"):
        return "azure.ai.openai"
    if host == "openai.com" or host.endswith(".openai.com"):
        return "openai"
    return None


Fallbacks = Provider | Mapping[str, Any] | Iterable[Provider | Mapping[str, Any]] | None


def check_fallbacks(value: Fallbacks) -> tuple[Provider, ...]:
    """Providers from ``fallbacks=``: one or many, as ``Provider`` or as its keyword dicts."""
    if value is None:
        return ()
    items = (value,) if isinstance(value, Provider | Mapping) else tuple(value)
    for item in items:
        if not isinstance(item, Provider | Mapping):
            raise ConfigError(f"fallbacks= takes nbflow.llm.Provider objects, got {item!r}")
    return tuple(v if isinstance(v, Provider) else Provider(**v) for v in items)
