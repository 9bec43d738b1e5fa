"""One API call from start to finish: span, rate limit, attempts over providers.

``call_sync`` and ``call_async`` are the same loop in two shapes; everything
they decide (which provider, how long to wait, what the span records) is in
``Call``, so the two cannot drift apart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from nbflow._preview import preview, truncate
from nbflow.constants import REDACTED
from nbflow.errors import StructuredOutputError
from nbflow.llm._attrs import (
    INPUT_TOKENS,
    OUTPUT_TOKENS,
    Attrs,
    given,
    output_cap,
    output_preview,
    prompt_chars,
    request_attrs,
    response_attrs,
)
from nbflow.llm._span import CallSpan, LLMComponent
from nbflow.llm._stream import (
    AsyncReplayStream,
    AsyncTracedStream,
    ChatFollower,
    Follower,
    RecordedStream,
    ReplayStream,
    ResponsesFollower,
    TracedStream,
)
from nbflow.llm.fallback import Target
from nbflow.llm.ratelimit import Admission, RateLimit, admit, admit_async, estimate_tokens
from nbflow.llm.retry import Retry, retryable

WAIT_MS = "nbflow.ratelimit.wait_ms"
RAW_OUTPUT = "nbflow.output.raw"  # a reply that did not parse, as the model sent it
_RAW_IN_MESSAGE_CHARS = 500


@dataclass(frozen=True)
class Endpoint:
    """A traced SDK method: ``operation`` names its spans, ``path`` finds it on a client.

    A ``parses`` method (``parse``) is called through ``with_raw_response`` so that
    a reply that does not parse can still be read, recorded and reported.
    """

    operation: str  # "chat" | "responses" | "embeddings"
    path: tuple[str, ...]
    method: str
    parses: bool = False

    def bind(self, sdk: Any) -> Callable[..., Any]:
        resource = sdk
        for name in self.path:
            resource = getattr(resource, name)
        if self.parses:
            resource = resource.with_raw_response
        method: Callable[..., Any] = getattr(resource, self.method)
        return method


class Settings:
    """What every call made through one client shares."""

    def __init__(self, targets: tuple[Target, ...], retry: Retry, *, record_content: bool) -> None:
        self.targets = targets
        self.retry = retry
        self.record_content = record_content
        self.limited = any(t.rate_limit is not None for t in targets)
        self._components: dict[tuple[str, str], LLMComponent] = {}
        self._methods: dict[tuple[int, Endpoint], Callable[..., Any]] = {}

    def component(self, operation: str, model: str) -> LLMComponent:
        key = (operation, model)
        comp = self._components.get(key)
        if comp is None:
            comp = LLMComponent.build(operation, model, record_content=self.record_content)
            self._components[key] = comp
        return comp

    def method(self, target: Target, endpoint: Endpoint) -> Callable[..., Any]:
        key = (target.index, endpoint)
        method = self._methods.get(key)
        if method is None:
            method = self._methods[key] = endpoint.bind(target.sdk)
        return method


class Call:
    """One API call: its span, and the attempts it takes over the providers in turn."""

    def __init__(self, settings: Settings, endpoint: Endpoint, request: dict[str, Any]) -> None:
        self.settings = settings
        self.operation = endpoint.operation
        self.endpoint = endpoint
        self.request = request
        self.model = str(request.get("model", ""))
        self.stream = request.get("stream") is True
        self.hide_usage = False
        self.target_index = 0
        self.retries = 0
        self.attempt = 1
        self.started = 0.0
        self.admission: Admission | None = None
        self.span = CallSpan.open(settings.component(self.operation, self.model), request)
        if not self.span.replayed:
            self.span.attrs.update(request_attrs(self.operation, request))

    @property
    def target(self) -> Target:
        return self.settings.targets[self.target_index]

    # --- one attempt ------------------------------------------------------------------
    def prepare(self) -> tuple[Callable[..., Any], dict[str, Any]]:
        """The method to call and its arguments, for the provider whose turn it is."""
        target = self.target
        model = target.model_for(self.model)
        request = self.request if model == self.model else {**self.request, "model": model}
        if self.stream and self.operation == "chat":
            request = self._asking_for_usage(request)
        attrs = self.span.attrs
        attrs.update(target.attrs)
        attrs["gen_ai.request.model"] = model
        return self.settings.method(target, self.endpoint), request

    def _asking_for_usage(self, request: dict[str, Any]) -> dict[str, Any]:
        options = request.get("stream_options")
        options = options if given(options) and isinstance(options, Mapping) else {}
        if options.get("include_usage") is True:
            return request
        self.hide_usage = True
        return {**request, "stream_options": {**options, "include_usage": True}}

    def _limit(self) -> tuple[str, RateLimit, int] | None:
        if not self.settings.limited:
            return None
        target = self.target
        model = target.model_for(self.model)
        limit = target.limit(model)
        if limit is None:
            return None
        tokens = estimate_tokens(prompt_chars(self.request), output_cap(self.request))
        return f"{target.name}/{model}", limit, tokens

    def admit(self) -> None:
        found = self._limit()
        self.admission = None if found is None else admit(*found)
        self._admitted()

    async def admit_async(self) -> None:
        found = self._limit()
        self.admission = None if found is None else await admit_async(*found)
        self._admitted()

    def _admitted(self) -> None:
        if self.admission is not None and self.admission.waited_s:
            attrs = self.span.attrs
            waited_ms = attrs.get(WAIT_MS, 0.0) + self.admission.waited_s * 1000
            attrs[WAIT_MS] = round(waited_ms, 3)
        self.started = time.perf_counter()

    def after_error(self, error: BaseException) -> float | None:
        """Seconds to wait before the next attempt; None when the error goes to the caller."""
        failed_on = self.target.name
        delay = None if self.span.cancelled else self._next_delay(error)
        if delay is None:
            self.span.failed(error, self.attempt)
            return None
        fields = {"provider": failed_on}
        if self.target.name != failed_on:
            fields["fallback_to"] = self.target.name
        self.span.retried(self.attempt, error, delay, **fields)
        self.attempt += 1
        return delay

    def _next_delay(self, error: BaseException) -> float | None:
        delay = self.settings.retry.delay_s(self.retries + 1, error)
        if delay is not None:
            self.retries += 1
            return delay
        if not retryable(error) or self.target_index + 1 >= len(self.settings.targets):
            return None
        self.target_index += 1  # this provider is down: the next one, at once
        self.retries = 0
        return 0.0

    # --- parsing ----------------------------------------------------------------------------
    def parsed(self, result: Any) -> Any:
        """The SDK's parse of a raw reply; one that does not parse fails with its text kept."""
        if not self.endpoint.parses:
            return result
        import openai

        try:
            return result.parse()
        except (
            ValueError,
            openai.LengthFinishReasonError,
            openai.ContentFilterFinishReasonError,
        ) as error:
            raise self._unparsable(result, error) from error

    def _unparsable(self, raw: Any, error: BaseException) -> StructuredOutputError:
        reply = unparsed_reply(self.operation, raw)
        text = raw.http_response.text if reply is None else reply_text(self.operation, reply)
        if reply is not None:
            self._record(response_attrs(self.operation, reply), None)  # its tokens were paid for
        shown = self.settings.record_content
        self.span.attrs[RAW_OUTPUT] = preview(text) if shown else REDACTED
        fmt = self.request.get("response_format") or self.request.get("text_format")
        message = (
            f"{self.operation} {self.model}: the reply is not a valid "
            f"{getattr(fmt, '__name__', 'reply')}: {_why(error)}"
        )
        if shown:
            message += f"\nraw reply: {truncate(text, _RAW_IN_MESSAGE_CHARS)!r}"
        return StructuredOutputError(message, raw=text, reply=reply)

    # --- finishing ------------------------------------------------------------------------
    def succeeded(self, response: Any) -> Future[None] | None:
        self._record(response_attrs(self.operation, response), None)
        record_content = self.settings.record_content
        output = output_preview(self.operation, response, record_content=record_content)
        return self.span.succeeded(response, self.attempt, output)

    def follower(self) -> Follower:
        if self.operation == "chat":
            logprobs = self.request.get("logprobs") is True
            return ChatFollower(hide_usage=self.hide_usage, logprobs=logprobs)
        return ResponsesFollower()

    def stream_finished(self, follower: Follower) -> Future[None] | None:
        # A server that ignores stream_options sends no usage: count what came instead.
        attrs = follower.attrs() if follower.has_usage else self._estimated(follower)
        self._record(attrs, follower.first_token_at)
        recorded = RecordedStream(self.operation, follower.items)
        return self.span.succeeded(recorded, self.attempt, self._stream_output(follower))

    async def stream_finished_async(self, follower: Follower) -> None:
        pending = self.stream_finished(follower)
        if pending is not None:
            await asyncio.wrap_future(pending)

    def stream_failed(self, error: BaseException, follower: Follower) -> None:
        if self.span.closed:
            return
        self._record(self._estimated(follower), follower.first_token_at)
        self.span.failed(error, self.attempt)

    def stream_closed(self, follower: Follower) -> None:
        """The caller stopped reading: the span ends ok, and nothing is recorded for replays."""
        if self.span.closed:
            return
        attrs = follower.attrs() if follower.has_usage else self._estimated(follower)
        self._record({**attrs, "nbflow.stream.closed_early": True}, follower.first_token_at)
        self.span.ended(self.attempt, self._stream_output(follower))

    def _stream_output(self, follower: Follower) -> Any:
        return follower.output() if self.settings.record_content else REDACTED

    def _estimated(self, follower: Follower) -> Attrs:
        """Tokens so far when the stream did not get to report its usage."""
        attrs = follower.attrs()
        attrs[INPUT_TOKENS] = estimate_tokens(prompt_chars(self.request), None)
        attrs[OUTPUT_TOKENS] = follower.pieces
        attrs["nbflow.usage.estimated"] = True
        return attrs

    def _record(self, attrs: Attrs, first_token_at: float | None) -> None:
        now = time.perf_counter()
        attrs["nbflow.latency_ms"] = round((now - self.started) * 1000, 3)
        if first_token_at is not None:
            attrs["nbflow.ttft_ms"] = round((first_token_at - self.started) * 1000, 3)
        self.span.attrs.update(attrs)
        if self.admission is not None and INPUT_TOKENS in attrs:
            self.admission.settle(attrs[INPUT_TOKENS] + attrs.get(OUTPUT_TOKENS, 0))


def unparsed_reply(operation: str, raw: Any) -> Any:
    """The SDK object of a raw reply, without the parse that failed; None if it is not one."""
    from openai.types.chat import ChatCompletion
    from openai.types.responses import Response

    model = ChatCompletion if operation == "chat" else Response
    try:
        return model.model_validate(raw.http_response.json())
    except ValueError:
        return None


def reply_text(operation: str, reply: Any) -> str:
    if operation == "responses":
        return str(reply.output_text)
    message = reply.choices[0].message if reply.choices else None
    return str(getattr(message, "content", None) or getattr(message, "refusal", None) or "")


def _why(error: BaseException) -> str:
    import openai

    if isinstance(error, openai.LengthFinishReasonError):
        return "it was cut at the output token cap (finish reason 'length') before it was whole"
    if isinstance(error, openai.ContentFilterFinishReasonError):
        return "the provider's content filter stopped it"
    return truncate(" ".join(str(error).split()), _RAW_IN_MESSAGE_CHARS)


def replayed(value: Any, *, asynchronous: bool) -> Any:
    if isinstance(value, RecordedStream):
        chunks = value.chunks()
        return AsyncReplayStream(chunks) if asynchronous else ReplayStream(chunks)
    return value


def call_sync(settings: Settings, endpoint: Endpoint, request: dict[str, Any]) -> Any:
    call = Call(settings, endpoint, request)
    if call.span.replayed:
        return replayed(call.span.recorded, asynchronous=False)
    while True:
        method, arguments = call.prepare()
        try:
            call.admit()
            result = call.parsed(method(**arguments))
        except BaseException as error:
            delay = call.after_error(error)
            if delay is None:
                raise
            time.sleep(delay)
            continue
        if call.stream:
            return TracedStream(result, call, call.follower())
        pending = call.succeeded(result)
        if pending is not None:
            pending.result()
        return result


async def call_async(settings: Settings, endpoint: Endpoint, request: dict[str, Any]) -> Any:
    call = Call(settings, endpoint, request)
    if call.span.replayed:
        return replayed(call.span.recorded, asynchronous=True)
    while True:
        method, arguments = call.prepare()
        try:
            await call.admit_async()
            result = call.parsed(await method(**arguments))
        except BaseException as error:
            delay = call.after_error(error)
            if delay is None:
                raise
            await asyncio.sleep(delay)
            continue
        if call.stream:
            return AsyncTracedStream(result, call, call.follower())
        pending = call.succeeded(result)
        if pending is not None:
            await asyncio.wrap_future(pending)
        return result
