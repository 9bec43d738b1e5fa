"""Retries, Retry-After, provider fallback and broken streams, over real HTTP."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

import nbflow as nf
from nbflow._fold import SpanState
from nbflow.llm import OpenAI, Provider, Retry
from nbflow.llm.offline import OfflineServer, complete

from ..conftest import last_run

MODEL = "gpt-4o-mini"
QUESTION = "Plan a resilient agent workflow"
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": QUESTION}]
EXPECTED = complete(MODEL, [("user", QUESTION)], max_tokens=None)
FAST = Retry(initial_s=0.01, max_s=0.05)


@pytest.fixture
def client(server: OfflineServer) -> Iterator[OpenAI]:
    with nf.openai.OpenAI(base_url=server.base_url, api_key="offline", retry=FAST) as traced:
        yield traced


def only_span() -> SpanState:
    (span,) = [s for s in last_run().trace().state.spans.values() if s.kind == "llm"]
    return span


def retry_events() -> list[dict[str, Any]]:
    return [e for e in last_run().events() if e["type"] == "span.retry"]


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def test_a_429_storm_is_retried_honouring_retry_after_and_each_retry_is_an_event(
    client, server
) -> None:
    server.inject("429", count=3, retry_after_s=0.1)
    started = time.monotonic()
    reply = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert time.monotonic() - started >= 0.3
    assert reply.choices[0].message.content == EXPECTED.text
    span = only_span()
    assert (span.status, span.attempts) == ("ok", 4)
    events = retry_events()
    assert [e["attempt"] for e in events] == [1, 2, 3]
    assert all(e["error_type"] == "RateLimitError" and e["delay_s"] >= 0.1 for e in events)
    assert server.stats()["faults"]["429"] == 3


def test_an_llm_retry_event_has_a_component_retrys_fields_and_names_the_provider(
    client, server
) -> None:
    nf.set_testing(True)
    try:

        @nf.component(retry=2)
        def flaky() -> int:
            if not retry_events():
                raise ConnectionError("reset")
            return 1

        flaky()
        (component_retry,) = retry_events()
        server.inject("500", count=1)
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
        (llm_retry,) = retry_events()
    finally:
        nf.set_testing(False)
    assert set(llm_retry) == {*component_retry, "provider"}
    assert (llm_retry["attempt"], llm_retry["error_type"]) == (1, "InternalServerError")
    assert "Traceback" in llm_retry["traceback"] and "Traceback" in component_retry["traceback"]
    assert llm_retry["span_id"] == only_span().span_id


def test_retry_after_is_honoured_even_in_testing_mode(client, server) -> None:
    nf.set_testing(True)
    try:
        server.inject("429", count=2, retry_after_s=0.15)
        started = time.monotonic()
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
        assert time.monotonic() - started >= 0.3
    finally:
        nf.set_testing(False)


def test_server_errors_are_retried_with_backoff(client, server) -> None:
    server.inject("500", count=2)
    client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert only_span().attempts == 3
    assert {e["error_type"] for e in retry_events()} == {"InternalServerError"}
    assert all(0 < e["delay_s"] <= 0.05 for e in retry_events())


def test_after_its_retries_the_caller_gets_the_sdks_own_exception(server) -> None:
    server.inject("429", count=10, retry_after_s=0.01)
    client = nf.openai.OpenAI(base_url=server.base_url, api_key="offline", max_retries=2)
    with client, pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert info.value.status_code == 429
    span = only_span()
    assert (span.status, span.attempts, span.error_type) == ("error", 3, "RateLimitError")
    assert last_run().status() == "failed"


def test_request_errors_are_raised_at_once_without_retries(client, server) -> None:
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=[])
    assert server.stats()["requests"]["chat.completions"] == 1
    assert retry_events() == [] and only_span().status == "error"


def test_a_provider_outage_falls_back_to_the_next_and_the_span_says_which_served(
    server, backup_server
) -> None:
    server.inject("500", count=5)
    backup = Provider(base_url=backup_server.base_url, api_key="backup-key", name="backup")
    with nf.openai.OpenAI(
        base_url=server.base_url,
        api_key="offline",
        retry=Retry(max_retries=1, initial_s=0.01),
        fallbacks=[backup],
        provider_name="primary",
    ) as client:
        reply = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert reply.choices[0].message.content == EXPECTED.text
    assert server.stats()["requests"]["chat.completions"] == 2
    assert backup_server.stats()["requests"]["chat.completions"] == 1
    span = only_span()
    assert span.attrs["nbflow.provider"] == "backup" and span.attrs["nbflow.fallback"] is True
    assert span.attrs["server.port"] == backup_server.port and span.attempts == 3
    assert [(e["provider"], e.get("fallback_to")) for e in retry_events()] == [
        ("primary", None),
        ("primary", "backup"),
    ]


def test_an_unreachable_provider_falls_back_and_the_fallback_can_change_the_model(
    backup_server,
) -> None:
    backup = Provider(base_url=backup_server.base_url, model="gpt-4.1-mini")
    with nf.openai.OpenAI(
        base_url=closed_port_url(), api_key="k", retry=Retry(max_retries=0), fallbacks=[backup]
    ) as client:
        reply = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert reply.model == "gpt-4.1-mini"
    span = only_span()
    assert span.name == f"chat {MODEL}"
    assert (
        span.attrs["gen_ai.request.model"] == span.attrs["gen_ai.response.model"] == "gpt-4.1-mini"
    )
    assert retry_events()[0]["error_type"] == "APIConnectionError"


def test_a_retry_after_longer_than_allowed_counts_as_down(server, backup_server) -> None:
    server.inject("429", count=1, retry_after_s=30)
    retry = Retry(max_retry_after_s=1.0)
    backup = Provider(base_url=backup_server.base_url)
    started = time.monotonic()
    with nf.openai.OpenAI(
        base_url=server.base_url, api_key="k", retry=retry, fallbacks=[backup]
    ) as client:
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert time.monotonic() - started < 5
    assert only_span().attrs["nbflow.fallback"] is True


def test_a_fallback_without_its_own_key_is_never_sent_the_first_providers_key(
    server, backup_server
) -> None:
    backup = Provider(base_url=backup_server.base_url)
    with nf.openai.OpenAI(
        base_url=server.base_url, api_key="sk-secret", fallbacks=[backup]
    ) as client:
        assert client._settings.targets[1].sdk.api_key != "sk-secret"


def test_a_stream_cut_midway_is_an_error_span_with_the_tokens_so_far(client, server) -> None:
    server.inject("cut_stream", after_chunks=6)
    seen: list[Any] = []

    @nf.workflow
    def reader() -> str:
        try:
            for chunk in client.chat.completions.create(
                model=MODEL, messages=MESSAGES, stream=True
            ):
                seen.append(chunk)
        except openai.APIConnectionError as error:
            return type(error).__name__
        return "finished"

    assert reader() == "APIConnectionError"
    span = only_span()
    assert span.status == "error" and span.error_type == "APIConnectionError"
    content_chunks = sum(1 for c in seen if c.choices[0].delta.content)
    assert span.attrs["gen_ai.usage.output_tokens"] == content_chunks == 5
    assert (
        span.attrs["gen_ai.usage.input_tokens"] > 0 and span.attrs["nbflow.usage.estimated"] is True
    )
    assert last_run().trace().usage["output_tokens"] == 5


def test_a_stream_closed_early_ends_its_span_with_what_was_read(client) -> None:
    with client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True) as stream:
        for i, _ in enumerate(stream):
            if i == 3:
                break
    span = only_span()
    assert span.status == "ok" and span.attrs["nbflow.stream.closed_early"] is True
    assert span.attrs["gen_ai.usage.output_tokens"] == 3
    assert last_run().status() == "succeeded"


def test_the_async_client_retries_and_falls_back_too(server, backup_server) -> None:
    server.inject("429", count=1, retry_after_s=0.05)
    server.inject("500", count=5)
    backup = Provider(base_url=backup_server.base_url)

    async def main() -> str:
        async with nf.openai.AsyncOpenAI(
            base_url=server.base_url,
            api_key="k",
            retry=Retry(max_retries=2, initial_s=0.01),
            fallbacks=[backup],
        ) as client:
            stream = await client.chat.completions.create(
                model=MODEL, messages=MESSAGES, stream=True
            )
            return "".join([c.choices[0].delta.content or "" async for c in stream])

    assert asyncio.run(main()) == EXPECTED.text
    span = only_span()
    assert span.status == "ok" and span.attempts == 4 and span.attrs["nbflow.fallback"] is True
    assert [e["error_type"] for e in retry_events()] == [
        "RateLimitError",
        "InternalServerError",
        "InternalServerError",
    ]
