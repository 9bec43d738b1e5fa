"""Drop-in OpenAI clients whose API calls are llm spans.

    client = nf.openai.OpenAI()            # the SDK's own arguments, plus nbflow's
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=[...])

``chat.completions.create`` / ``parse``, ``responses.create`` / ``parse`` and
``embeddings.create`` are traced, retried, rate limited and can fall back to
other providers; every other attribute is the SDK client's own, untouched. A
``parse`` whose reply does not parse raises ``nf.StructuredOutputError`` with the
reply's text (``.raw``), which its span keeps too (``nbflow.output.raw``).
nbflow's options (keyword-only, all optional):

- ``record_content=True``: prompts and replies go into spans; False keeps them out.
- ``retry=Retry(...)``: back-off per provider. The SDK's ``max_retries`` sets its
  ``max_retries``; the SDK itself is told not to retry, so that each retry is an
  event in the run's log.
- ``rate_limit=RateLimit(...)`` or ``{model: RateLimit, "*": ...}``.
- ``fallbacks=[Provider(...), ...]``: tried in order once this provider is down.
- ``provider_name=``: how spans name this provider (default: its host).

A client can be used inside workflows shipped to workers: it travels as its
constructor arguments and is rebuilt there (so an ``http_client`` cannot).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Self

import openai
from openai import NOT_GIVEN, NotGiven

from nbflow.errors import ConfigError
from nbflow.llm._attrs import given
from nbflow.llm._call import Endpoint, Settings, call_async, call_sync
from nbflow.llm.fallback import NO_KEY, Fallbacks, check_fallbacks, targets
from nbflow.llm.ratelimit import RateLimits
from nbflow.llm.retry import DEFAULT_MAX_RETRIES, Retry

if TYPE_CHECKING:
    from openai.resources import (
        AsyncAudio,
        AsyncBatches,
        AsyncBeta,
        AsyncChat,
        AsyncCompletions,
        AsyncEmbeddings,
        AsyncFiles,
        AsyncFineTuning,
        AsyncImages,
        AsyncModels,
        AsyncModerations,
        AsyncUploads,
        AsyncVectorStores,
        Audio,
        Batches,
        Beta,
        Chat,
        Completions,
        Embeddings,
        Files,
        FineTuning,
        Images,
        Models,
        Moderations,
        Uploads,
        VectorStores,
    )
    from openai.resources.responses import AsyncResponses, Responses

    from nbflow.llm.offline import OfflineServer

TRACED: dict[tuple[str, ...], dict[str, Endpoint]] = {
    ("chat", "completions"): {
        "create": Endpoint("chat", ("chat", "completions"), "create"),
        "parse": Endpoint("chat", ("chat", "completions"), "parse", parses=True),
    },
    ("responses",): {
        "create": Endpoint("responses", ("responses",), "create"),
        "parse": Endpoint("responses", ("responses",), "parse", parses=True),
    },
    ("embeddings",): {"create": Endpoint("embeddings", ("embeddings",), "create")},
}
NBFLOW_OPTIONS = ("record_content", "retry", "rate_limit", "fallbacks", "provider_name")
CREDENTIAL_OPTIONS = ("api_key", "admin_api_key", "workload_identity", "provider")

MISSING_KEY = (
    "No OpenAI API key. Either set OPENAI_API_KEY, or pass base_url= to an "
    "OpenAI-compatible server (Ollama, vLLM, llama.cpp, or nbflow's offline model: "
    "run `python -m nbflow.llm.offline` and use base_url='http://127.0.0.1:8777/v1')."
)


class MissingCredentials(ConfigError, openai.OpenAIError):
    """No API key and no base URL: raised when the client is made, naming both fixes."""


class _Resource:
    """An SDK resource with some methods traced; every other attribute is the SDK's."""

    def __init__(
        self, resource: Any, methods: dict[str, Any], children: dict[str, _Resource]
    ) -> None:
        self._resource = resource
        self.__dict__.update(methods)
        self.__dict__.update(children)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._resource, name)

    def __repr__(self) -> str:
        return f"<nbflow traced {type(self._resource).__name__}>"


class _Client:
    """The traced client; the sync and async ones differ only in how they call and close."""

    _sdk_class = "OpenAI"
    _asynchronous = False
    _sdk: Any
    _settings: Settings
    _config: dict[str, Any]

    def __init__(
        self,
        *,
        api_key: str | NotGiven | None = NOT_GIVEN,
        organization: str | NotGiven | None = NOT_GIVEN,
        project: str | NotGiven | None = NOT_GIVEN,
        base_url: str | NotGiven | None = NOT_GIVEN,
        timeout: float | openai.Timeout | NotGiven | None = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        default_headers: Mapping[str, str] | NotGiven | None = NOT_GIVEN,
        default_query: Mapping[str, object] | NotGiven | None = NOT_GIVEN,
        record_content: bool = True,
        retry: Retry | None = None,
        rate_limit: RateLimits = None,
        fallbacks: Fallbacks = None,
        provider_name: str | None = None,
        **options: Any,
    ) -> None:
        """The SDK client's own keywords (those above, and any other it takes, such as
        ``http_client``), plus nbflow's: see the module's docstring."""
        sdk_options = {
            "api_key": api_key,
            "organization": organization,
            "project": project,
            "base_url": base_url,
            "timeout": timeout,
            "max_retries": max_retries,
            "default_headers": default_headers,
            "default_query": default_query,
        }
        # Only what was given reaches the SDK, so its own defaults (and env) still apply.
        given_options = {k: v for k, v in sdk_options.items() if not isinstance(v, NotGiven)}
        nbflow_options = {
            "record_content": record_content,
            "retry": retry,
            "rate_limit": rate_limit,
            "fallbacks": fallbacks,
            "provider_name": provider_name,
        }
        self._setup({**given_options, **options}, nbflow_options)

    def _setup(self, options: dict[str, Any], nbflow_options: dict[str, Any]) -> None:
        self._config = {**options, **nbflow_options}
        max_retries = options.pop("max_retries", None)
        _check_credentials(options)
        # The SDK must not retry on its own: each retry is nbflow's, and an event in the log.
        sdk = getattr(openai, self._sdk_class)(**options, max_retries=0)
        self._attach(sdk, nbflow_options, max_retries)

    def _attach(self, sdk: Any, nbflow_options: dict[str, Any], max_retries: int | None) -> None:
        chain = targets(
            sdk,
            name=nbflow_options["provider_name"],
            rate_limit=nbflow_options["rate_limit"],
            fallbacks=check_fallbacks(nbflow_options["fallbacks"]),
        )
        retry = _retry(nbflow_options["retry"], max_retries)
        record_content = bool(nbflow_options["record_content"])
        self._sdk = sdk
        self._settings = Settings(chain, retry, record_content=record_content)
        self.__dict__.update(self._resources(sdk))

    def _resources(self, sdk: Any) -> dict[str, _Resource]:
        completions = _Resource(sdk.chat.completions, self._methods(("chat", "completions")), {})
        return {
            "chat": _Resource(sdk.chat, {}, {"completions": completions}),
            "responses": _Resource(sdk.responses, self._methods(("responses",)), {}),
            "embeddings": _Resource(sdk.embeddings, self._methods(("embeddings",)), {}),
        }

    def _methods(self, path: tuple[str, ...]) -> dict[str, Any]:
        return {name: self._traced(endpoint) for name, endpoint in TRACED[path].items()}

    def _traced(self, endpoint: Endpoint) -> Any:
        settings = self._settings
        if self._asynchronous:

            async def traced_async(**request: Any) -> Any:
                return await call_async(settings, endpoint, request)

            return traced_async

        def traced(**request: Any) -> Any:
            return call_sync(settings, endpoint, request)

        return traced

    def with_options(self, **options: Any) -> Self:
        """A copy with some SDK or nbflow options changed, traced like this one.

        Like the SDK's own copy, it shares this client's connection pool.
        """
        nbflow_options = {k: options.pop(k, self._config.get(k)) for k in NBFLOW_OPTIONS}
        max_retries = options.pop("max_retries", self._config.get("max_retries"))
        clone = object.__new__(type(self))
        clone._config = {**self._config, **options, **nbflow_options, "max_retries": max_retries}
        clone._attach(self._sdk.with_options(**options), nbflow_options, max_retries)
        return clone

    copy = with_options

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_sdk", "_settings", "_config"):
            raise AttributeError(name)
        return getattr(self._sdk, name)

    def __repr__(self) -> str:
        return f"<nbflow traced {self._sdk_class} {self._sdk.base_url}>"

    def __reduce__(self) -> tuple[Any, ...]:
        if self._config.get("http_client") is not None:
            raise TypeError(
                "a client made with http_client= cannot travel to a worker; "
                "create it inside the workflow instead"
            )
        return (_rebuild, (type(self), self._config))


def _rebuild(cls: type[_Client], config: dict[str, Any]) -> _Client:
    return cls(**config)


class OpenAI(_Client):
    """``openai.OpenAI``, traced: each chat, Responses and embeddings call is an llm span.

    Its resources have the SDK's types: the traced ones return what the SDK's do.
    """

    chat: Chat
    responses: Responses
    embeddings: Embeddings
    models: Models
    completions: Completions
    files: Files
    images: Images
    audio: Audio
    moderations: Moderations
    fine_tuning: FineTuning
    batches: Batches
    uploads: Uploads
    vector_stores: VectorStores
    beta: Beta

    def close(self) -> None:
        self._sdk.close()

    def __enter__(self) -> OpenAI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncOpenAI(_Client):
    """``openai.AsyncOpenAI``, traced: each chat, Responses and embeddings call is an llm span.

    Its resources have the SDK's types: the traced ones return what the SDK's do.
    """

    chat: AsyncChat
    responses: AsyncResponses
    embeddings: AsyncEmbeddings
    models: AsyncModels
    completions: AsyncCompletions
    files: AsyncFiles
    images: AsyncImages
    audio: AsyncAudio
    moderations: AsyncModerations
    fine_tuning: AsyncFineTuning
    batches: AsyncBatches
    uploads: AsyncUploads
    vector_stores: AsyncVectorStores
    beta: AsyncBeta

    _sdk_class = "AsyncOpenAI"
    _asynchronous = True

    async def close(self) -> None:
        await self._sdk.close()

    async def __aenter__(self) -> AsyncOpenAI:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _retry(retry: Retry | None, max_retries: int | None) -> Retry:
    if retry is not None and not isinstance(retry, Retry):
        raise ConfigError(f"retry= takes nbflow.llm.Retry(...), got {retry!r}")
    base = retry or Retry()
    return base if max_retries is None else replace(base, max_retries=max_retries)


def _check_credentials(options: dict[str, Any]) -> None:
    if any(options.get(k) is not None for k in CREDENTIAL_OPTIONS):
        return
    if os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_ADMIN_KEY"):
        return
    base_url = options.get("base_url")
    if (given(base_url) and base_url) or os.environ.get("OPENAI_BASE_URL"):
        options["api_key"] = NO_KEY  # compatible servers rarely need one; the SDK insists
        return
    raise MissingCredentials(MISSING_KEY)


# --- the client demos and notebooks use ----------------------------------------------------
_offline: OfflineServer | None = None
_offline_lock = threading.Lock()


def default_client(**options: Any) -> OpenAI:
    """A traced client on ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``, else on the offline model."""
    return OpenAI(**{**_default_options(), **options})


def default_async_client(**options: Any) -> AsyncOpenAI:
    return AsyncOpenAI(**{**_default_options(), **options})


def _default_options() -> Mapping[str, Any]:
    if os.environ.get("OPENAI_BASE_URL") or os.environ.get("OPENAI_API_KEY"):
        return {}
    return {"base_url": offline_server().base_url, "api_key": "offline"}


def offline_server() -> OfflineServer:
    """This process's offline model, started on first use; it says so once, on stderr."""
    global _offline
    with _offline_lock:
        if _offline is None:
            from nbflow.llm.offline import serve_offline

            _offline = serve_offline()
            print(
                "nbflow: OPENAI_API_KEY and OPENAI_BASE_URL are not set, so LLM calls go to "
                f"nbflow's offline model at {_offline.base_url} "
                "(deterministic replies, no network).",
                file=sys.stderr,
                flush=True,
            )
        return _offline


__all__ = [
    "DEFAULT_MAX_RETRIES",
    "AsyncOpenAI",
    "MissingCredentials",
    "OpenAI",
    "default_async_client",
    "default_client",
    "offline_server",
]
