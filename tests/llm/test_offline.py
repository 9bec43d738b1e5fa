"""The offline model, driven through the official OpenAI SDK over real HTTP."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessageParam

from nbflow.llm.offline import (
    Fault,
    OfflineServer,
    count_tokens,
    embed,
    main,
    reply_text,
    serve_offline,
)

REPO = Path(__file__).resolve().parents[2]
MODEL = "gpt-4o-mini"
QUESTION_TEXT = "How do Redis streams keep agent workflows durable?"
QUESTION: list[ChatCompletionMessageParam] = [{"role": "user", "content": QUESTION_TEXT}]
AUTH = {"authorization": "Bearer offline"}


@pytest.fixture(scope="module")
def server() -> Iterator[OfflineServer]:
    with serve_offline() as running:
        yield running


@pytest.fixture(scope="module")
def client(server: OfflineServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key="offline", max_retries=0) as sdk:
        yield sdk


@pytest.fixture(scope="module")
def http(server: OfflineServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers=AUTH) as plain:
        yield plain


@pytest.fixture(autouse=True)
def clean_server(server: OfflineServer) -> Iterator[None]:
    server.clear_faults()
    server.reset_stats()
    yield
    server.clear_faults()


# Options go through **kwargs, which hides the SDK's overloads; name the result types here.
def ask(client: openai.OpenAI, **options: Any) -> ChatCompletion:
    reply: ChatCompletion = client.chat.completions.create(
        model=MODEL, messages=QUESTION, **options
    )
    return reply


def ask_stream(client: openai.OpenAI, **options: Any) -> Iterator[ChatCompletionChunk]:
    chunks: Iterator[ChatCompletionChunk] = client.chat.completions.create(
        model=MODEL, messages=QUESTION, stream=True, **options
    )
    return chunks


# --- chat completions ---------------------------------------------------------------
def test_chat_reply_is_deterministic_and_counts_its_tokens(client: openai.OpenAI) -> None:
    first, second = ask(client), ask(client)
    text = first.choices[0].message.content
    assert text and text == second.choices[0].message.content
    assert "redis" in text.lower()  # the reply is built around the question's words
    assert first.choices[0].finish_reason == "stop"
    assert first.usage is not None
    assert first.usage.completion_tokens == count_tokens(text)
    assert first.usage.prompt_tokens > count_tokens(QUESTION_TEXT)
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens


def test_chat_reply_depends_on_model_and_messages(client: openai.OpenAI) -> None:
    base = ask(client).choices[0].message.content
    other_model = client.chat.completions.create(model="o4-mini", messages=QUESTION)
    other_question = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Plan a trip to Lisbon"}]
    )
    assert other_model.choices[0].message.content != base
    assert other_question.choices[0].message.content != base


def test_chat_stream_matches_plain_reply_and_ends_with_usage(client: openai.OpenAI) -> None:
    plain = ask(client)
    chunks = list(ask_stream(client, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage == plain.usage
    assert all(c.usage is None for c in chunks[:-1])


def test_chat_stream_without_include_usage_has_no_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(ask_stream(client))
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)


def test_chat_stream_is_sse_ending_with_done(http: httpx.Client) -> None:
    body = {"model": MODEL, "messages": QUESTION, "stream": True}
    response = http.post("/v1/chat/completions", json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text.endswith("data: [DONE]\n\n")


@pytest.mark.parametrize("cap", ["max_tokens", "max_completion_tokens"])
def test_chat_token_cap_truncates_with_finish_reason_length(
    client: openai.OpenAI, cap: str
) -> None:
    full = ask(client).choices[0].message.content or ""
    capped = ask(client, **{cap: 4})
    assert capped.choices[0].finish_reason == "length"
    assert capped.usage is not None and capped.usage.completion_tokens == 4
    assert full.startswith(capped.choices[0].message.content or "-")


def test_chat_stream_token_cap_ends_with_length(client: openai.OpenAI) -> None:
    chunks = list(ask_stream(client, max_tokens=3, stream_options={"include_usage": True}))
    assert chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3


# --- responses -----------------------------------------------------------------------
def test_responses_reply_with_usage_details(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model=MODEL, input="Summarise Redis streams", instructions="Be brief"
    )
    again = client.responses.create(
        model=MODEL, input="Summarise Redis streams", instructions="Be brief"
    )
    assert response.status == "completed"
    assert response.output_text and response.output_text == again.output_text
    usage = response.usage
    assert usage is not None
    assert usage.output_tokens == count_tokens(response.output_text)
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.output_tokens_details.reasoning_tokens == 0
    assert usage.input_tokens_details.cached_tokens == 0


def test_responses_stream_emits_the_responses_event_sequence(client: openai.OpenAI) -> None:
    events = list(
        client.responses.create(model=MODEL, input="Summarise Redis streams", stream=True)
    )
    types = [e.type for e in events]
    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert "response.output_text.done" in types
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    done = next(e for e in events if e.type == "response.output_text.done")
    assert deltas == done.text
    completed = events[-1]
    assert completed.type == "response.completed"
    assert completed.response.usage is not None
    assert completed.response.usage.output_tokens == types.count("response.output_text.delta")
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_responses_stream_helper_assembles_the_final_response(client: openai.OpenAI) -> None:
    plain = client.responses.create(model=MODEL, input="Summarise Redis streams")
    with client.responses.stream(model=MODEL, input="Summarise Redis streams") as stream:
        final = stream.get_final_response()
    assert final.output_text == plain.output_text


def test_responses_output_cap_marks_the_response_incomplete(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model=MODEL, input="Summarise Redis streams", max_output_tokens=5
    )
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.usage is not None and response.usage.output_tokens == 5


def test_responses_stream_is_named_sse_without_done(http: httpx.Client) -> None:
    body = {"model": MODEL, "input": "hi there", "stream": True}
    text = http.post("/v1/responses", json=body).text
    assert text.startswith("event: response.created\ndata: ")
    assert "[DONE]" not in text


# --- embeddings and models ------------------------------------------------------------
def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_embeddings_are_deterministic_unit_vectors(client: openai.OpenAI) -> None:
    texts = ["redis stream worker", "redis stream consumer", "banana cream pie"]
    result = client.embeddings.create(model="text-embedding-3-small", input=texts)
    vectors = [d.embedding for d in result.data]
    assert [len(v) for v in vectors] == [64, 64, 64]
    assert all(math.isclose(cosine(v, v), 1.0, rel_tol=1e-5) for v in vectors)
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2])
    assert vectors[0] == pytest.approx(embed(texts[0]), rel=1e-6)
    assert result.usage.prompt_tokens == result.usage.total_tokens == 9


def test_embeddings_float_format_and_dimensions(client: openai.OpenAI) -> None:
    floats = client.embeddings.create(
        model="text-embedding-3-small", input="hello", encoding_format="float", dimensions=16
    )
    assert floats.data[0].embedding == pytest.approx(embed("hello", 16))


def test_models_lists_and_retrieves_any_name(client: openai.OpenAI) -> None:
    assert MODEL in [m.id for m in client.models.list()]
    assert client.models.retrieve("my-fine-tune").id == "my-fine-tune"


# --- faults --------------------------------------------------------------------------
def test_429_fault_carries_retry_after_headers(
    server: OfflineServer, client: openai.OpenAI
) -> None:
    server.inject("429", retry_after_s=0.2)
    with pytest.raises(openai.RateLimitError) as caught:
        ask(client)
    headers = caught.value.response.headers
    assert headers["retry-after-ms"] == "200"
    assert headers["retry-after"] == "1"  # whole seconds, rounded up
    assert caught.value.code == "rate_limit_exceeded"
    assert ask(client).choices[0].message.content  # count=1: the next request succeeds


def test_fault_count_covers_that_many_requests(
    server: OfflineServer, client: openai.OpenAI
) -> None:
    server.inject("500", count=2)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            client.responses.create(model=MODEL, input="hi")
    client.responses.create(model=MODEL, input="hi")
    stats = server.stats()
    assert stats["requests"]["responses"] == 3
    assert stats["faults"]["500"] == 2


def test_sdk_retries_honour_retry_after_ms(server: OfflineServer) -> None:
    server.inject("429", count=2, retry_after_s=0.05)
    with openai.OpenAI(base_url=server.base_url, api_key="offline", max_retries=2) as retrying:
        reply = retrying.chat.completions.create(model=MODEL, messages=QUESTION)
    assert reply.choices[0].message.content
    assert server.stats()["requests"]["chat.completions"] == 3


def test_header_fault_applies_to_that_request_only(client: openai.OpenAI) -> None:
    fault = {"x-nbflow-fault": "429", "x-nbflow-fault-retry-after": "0.2"}
    with pytest.raises(openai.RateLimitError) as caught:
        ask(client, extra_headers=fault)
    assert caught.value.response.headers["retry-after-ms"] == "200"
    assert ask(client).choices[0].message.content


def test_cut_stream_raises_connection_error_after_some_chunks(
    server: OfflineServer, client: openai.OpenAI
) -> None:
    server.inject("cut_stream", after_chunks=3)
    received = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in ask_stream(client, stream_options={"include_usage": True}):
            received.append(chunk)
    assert len(received) == 3
    assert all(c.usage is None for c in received)
    assert len(list(ask_stream(client))) > 3  # the next stream is whole again


def test_cut_responses_stream_never_reaches_completed(
    server: OfflineServer, client: openai.OpenAI
) -> None:
    server.inject("cut_stream", after_chunks=5)
    types = []
    with pytest.raises(openai.APIConnectionError):
        for event in client.responses.create(model=MODEL, input="hi", stream=True):
            types.append(event.type)
    assert types[0] == "response.created" and len(types) == 5
    assert "response.completed" not in types


def test_cut_stream_waits_for_a_streaming_request(
    server: OfflineServer, client: openai.OpenAI
) -> None:
    server.inject("cut_stream")
    assert ask(client).choices[0].message.content
    assert [f.kind for f in server.pending_faults()] == ["cut_stream"]


def test_slow_first_token_delays_the_response(server: OfflineServer, client: openai.OpenAI) -> None:
    server.inject("slow_first_token", delay_s=0.3)
    started = time.monotonic()
    stream = ask_stream(client)
    first_byte_s = time.monotonic() - started
    list(stream)
    assert first_byte_s >= 0.25


def test_control_endpoints_over_plain_http(http: httpx.Client) -> None:
    posted = http.post("/_nbflow/faults", json={"kind": "429", "count": 2, "retry_after_s": 0.5})
    assert posted.json()["pending"][0]["count"] == 2
    rejected = http.post("/v1/embeddings", json={"model": "e", "input": "x"})
    assert rejected.status_code == 429
    assert rejected.headers["retry-after-ms"] == "500"
    assert set(rejected.json()["error"]) >= {"message", "type", "code"}
    assert http.delete("/_nbflow/faults").json() == {"pending": []}
    assert http.post("/v1/embeddings", json={"model": "e", "input": "x"}).status_code == 200
    stats = http.get("/_nbflow/stats").json()
    assert stats["requests"]["embeddings"] == 2
    assert stats["faults"]["429"] == 1


@pytest.mark.parametrize(
    "spec", [{"kind": "418"}, {"kind": "429", "count": 0}, {"kind": "500", "colour": "red"}, [1]]
)
def test_control_endpoint_rejects_bad_faults(http: httpx.Client, spec: object) -> None:
    response = http.post("/_nbflow/faults", json=spec)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_inject_rejects_unknown_kinds(server: OfflineServer) -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        server.inject("503")  # type: ignore[arg-type]
    assert Fault.from_json({"kind": "cut_stream", "after_chunks": "2"}).after_chunks == 2


def test_api_requires_a_bearer_key_of_any_value(server: OfflineServer) -> None:
    with httpx.Client(base_url=server.url) as anonymous:
        assert anonymous.get("/v1/models").status_code == 401
        assert anonymous.get("/v1/models", headers={"authorization": "Bearer x"}).status_code == 200


def test_bad_requests_get_openai_style_400(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json={"model": MODEL, "messages": []})
    assert response.status_code == 400
    assert "messages" in response.json()["error"]["message"]


# --- lifecycle -------------------------------------------------------------------------
def test_latency_paces_first_token_and_chunks_then_close_frees_the_port() -> None:
    with serve_offline(latency_s=0.1, token_interval_s=0.01) as paced:
        with openai.OpenAI(base_url=paced.base_url, api_key="k", max_retries=0) as sdk:
            started = time.monotonic()
            chunks = list(ask_stream(sdk))
            elapsed_s = time.monotonic() - started
        url = paced.url
    assert elapsed_s >= 0.1 + 0.01 * (len(chunks) - 1) * 0.8
    with httpx.Client() as plain, pytest.raises(httpx.ConnectError):
        plain.get(f"{url}/_nbflow/stats")


def test_reply_text_is_a_pure_function() -> None:
    turns = [("user", "durable workflows")]
    assert reply_text(MODEL, turns) == reply_text(MODEL, turns)
    assert reply_text(MODEL, turns) != reply_text("other", turns)


def test_cli_serves_until_interrupted() -> None:
    command = [sys.executable, "-m", "nbflow.llm.offline", "--port", "0"]
    with subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None
        banner = process.stdout.readline()
        base_url = banner.split()[4]
        response = httpx.get(f"{base_url}/models", headers=AUTH)
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=10)
    assert response.status_code == 200
    assert process.returncode == 0


def test_cli_help_exits_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    assert "--token-interval-s" in capsys.readouterr().out
