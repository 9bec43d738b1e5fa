"""The traced client over real HTTP: the official SDK against the offline model."""

from __future__ import annotations

import asyncio
import json
import pickle
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

import nbflow as nf
import nbflow.llm.client
from nbflow._fold import SpanState
from nbflow.llm import OpenAI, estimate_cost
from nbflow.llm.client import MissingCredentials
from nbflow.llm.offline import OfflineServer, complete, count_tokens

from ..conftest import last_run

MODEL = "gpt-4o-mini"
QUESTION = "How do Redis streams keep agent workflows durable?"
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": QUESTION}]
EXPECTED = complete(MODEL, [("user", QUESTION)], max_tokens=None)


@pytest.fixture
def client(server: OfflineServer) -> Iterator[OpenAI]:
    with nf.openai.OpenAI(base_url=server.base_url, api_key="offline") as traced:
        yield traced


def llm_spans(run: Any = None) -> list[SpanState]:
    trace = (run or last_run()).trace()
    return [s for s in trace.state.spans.values() if s.kind == "llm"]


def stream_text(chunks: Any) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_a_chat_call_in_a_workflow_is_an_llm_span_with_genai_attributes(client, server) -> None:
    @nf.workflow
    def ask() -> str:
        reply = client.chat.completions.create(
            model=MODEL, messages=MESSAGES, temperature=0.3, max_tokens=200
        )
        return reply.choices[0].message.content

    assert ask() == EXPECTED.text
    root, span = last_run().trace().state.spans.values()
    assert (span.kind, span.name, span.status, span.parent_id) == (
        "llm",
        f"chat {MODEL}",
        "ok",
        root.span_id,
    )
    attrs = span.attrs
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == attrs["nbflow.provider"] == f"127.0.0.1:{server.port}"
    assert attrs["gen_ai.request.model"] == attrs["gen_ai.response.model"] == MODEL
    assert attrs["gen_ai.usage.input_tokens"] == EXPECTED.prompt_tokens
    assert attrs["gen_ai.usage.output_tokens"] == EXPECTED.completion_tokens
    assert attrs["gen_ai.response.finish_reasons"] == ["stop"]
    assert attrs["gen_ai.request.temperature"] == 0.3
    assert attrs["gen_ai.request.max_tokens"] == 200
    assert attrs["server.port"] == server.port
    assert attrs["nbflow.latency_ms"] > 0
    cost = estimate_cost(
        MODEL, input_tokens=EXPECTED.prompt_tokens, output_tokens=EXPECTED.completion_tokens
    )
    assert attrs["nbflow.cost_usd"] == pytest.approx(cost)
    assert span.input["messages"] == MESSAGES and span.input["temperature"] == 0.3
    assert span.output == EXPECTED.text


def test_trace_token_columns_and_usage_add_up_every_kind_of_call(client) -> None:
    @nf.workflow
    def mixed() -> None:
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
        stream_text(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
        client.responses.create(model=MODEL, input=QUESTION)
        list(client.responses.create(model=MODEL, input=QUESTION, stream=True))
        client.embeddings.create(model="text-embedding-3-small", input=["a b c", "d e"])

    mixed()
    trace = last_run().trace()
    llm = trace.spans[trace.spans["kind"] == "llm"]
    assert len(llm) == 5 and set(llm["status"]) == {"ok"}
    assert list(llm["input_tokens"]) == [EXPECTED.prompt_tokens] * 4 + [5]
    assert list(llm["output_tokens"]) == [EXPECTED.completion_tokens] * 4 + [0]
    assert list(llm["model"]) == [MODEL] * 4 + ["text-embedding-3-small"]
    usage = trace.usage
    assert usage["llm_calls"] == 5
    assert usage["input_tokens"] == llm["input_tokens"].sum()
    assert (
        usage["total_tokens"]
        == llm["total_tokens"].sum()
        == usage["input_tokens"] + usage["output_tokens"]
    )
    assert usage["cost_usd"] == pytest.approx(llm["cost_usd"].sum()) and usage["cost_usd"] > 0


def test_a_stream_yields_the_sdks_chunks_and_its_usage_is_recorded_without_being_shown(
    client, server
) -> None:
    chunks = list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
    assert all(isinstance(c, openai.types.chat.ChatCompletionChunk) for c in chunks)
    assert all(c.choices for c in chunks), "the usage-only chunk nbflow asked for is hidden"
    assert stream_text(chunks) == EXPECTED.text
    (span,) = llm_spans()
    assert span.attrs["gen_ai.usage.output_tokens"] == EXPECTED.completion_tokens
    assert 0 < span.attrs["nbflow.ttft_ms"] <= span.attrs["nbflow.latency_ms"]
    assert span.attrs["nbflow.stream"] is True
    assert span.output == EXPECTED.text
    assert server.stats()["requests"]["chat.completions"] == 1


def test_a_stream_keeps_its_usage_chunk_when_the_caller_asked_for_it(client) -> None:
    stream = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert (
        chunks[-1].choices == []
        and chunks[-1].usage.completion_tokens == EXPECTED.completion_tokens
    )
    assert llm_spans()[0].attrs["gen_ai.usage.output_tokens"] == EXPECTED.completion_tokens


def test_responses_api_plain_and_streamed_are_spans_with_usage(client) -> None:
    @nf.workflow
    def both() -> tuple[str, str]:
        plain = client.responses.create(model=MODEL, input=QUESTION, max_output_tokens=10)
        events = client.responses.create(model=MODEL, input=QUESTION, stream=True)
        text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        return plain.output_text, text

    plain, streamed = both()
    assert streamed == EXPECTED.text and len(plain) < len(streamed)
    capped, full = llm_spans()
    assert capped.name == f"responses {MODEL}"
    assert capped.attrs["gen_ai.usage.output_tokens"] == 10
    assert capped.attrs["gen_ai.response.finish_reasons"] == ["max_output_tokens"]
    assert capped.attrs["gen_ai.request.max_tokens"] == 10
    assert full.attrs["gen_ai.usage.output_tokens"] == EXPECTED.completion_tokens
    assert full.attrs["gen_ai.response.finish_reasons"] == ["completed"]
    assert "nbflow.ttft_ms" in full.attrs and full.output == EXPECTED.text


def test_embeddings_record_input_tokens_vectors_and_dimensions(client) -> None:
    texts = ["durable agent workflows", "redis streams"]
    result = client.embeddings.create(model="text-embedding-3-small", input=texts, dimensions=32)
    assert len(result.data) == 2 and len(result.data[0].embedding) == 32
    (span,) = llm_spans()
    assert span.name == "embeddings text-embedding-3-small"
    assert span.attrs["gen_ai.usage.input_tokens"] == sum(map(count_tokens, texts))
    assert span.attrs["gen_ai.embeddings.dimension.count"] == 32
    assert span.output == {"vectors": 2}


def test_a_call_outside_any_run_is_a_one_span_in_process_run(client) -> None:
    client.chat.completions.create(model=MODEL, messages=MESSAGES)
    run = last_run()
    assert run.status() == "succeeded"
    assert run.result().choices[0].message.content == EXPECTED.text  # the SDK's own object
    (span,) = llm_spans(run)
    assert (
        span.parent_id is None and span.attrs["gen_ai.usage.input_tokens"] == EXPECTED.prompt_tokens
    )


def test_everything_else_is_the_sdk_clients_own(client, server) -> None:
    assert next(m.id for m in client.models.list()) == "gpt-4o-mini"
    assert client.api_key == "offline" and str(client.base_url).startswith(server.base_url)
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
    assert raw.http_response.status_code == 200
    assert callable(client.chat.completions.stream)
    assert client.with_options(timeout=5).chat.completions.create(model=MODEL, messages=MESSAGES)
    assert len(llm_spans()) == 1, "a copy made with with_options is traced too"


def test_chat_completions_parse_is_traced(client) -> None:
    parsed = client.chat.completions.parse(model=MODEL, messages=MESSAGES)
    assert parsed.choices[0].message.content == EXPECTED.text
    assert llm_spans()[0].attrs["gen_ai.usage.output_tokens"] == EXPECTED.completion_tokens


def test_the_async_client_traces_plain_and_streamed_calls(server) -> None:
    async def main() -> tuple[str, str]:
        async with nf.openai.AsyncOpenAI(base_url=server.base_url, api_key="offline") as client:

            @nf.workflow
            async def ask() -> tuple[str | None, str]:
                reply = await client.chat.completions.create(model=MODEL, messages=MESSAGES)
                stream = await client.chat.completions.create(
                    model=MODEL, messages=MESSAGES, stream=True
                )
                chunks = [c async for c in stream]
                return reply.choices[0].message.content, stream_text(chunks)

            return await ask()

    assert asyncio.run(main()) == (EXPECTED.text, EXPECTED.text)
    plain, streamed = llm_spans()
    assert plain.status == streamed.status == "ok"
    assert streamed.attrs["gen_ai.usage.output_tokens"] == EXPECTED.completion_tokens


def test_record_content_false_keeps_prompts_and_replies_out_of_the_log(server) -> None:
    secret_question = "Summarise the quarterly figures for Zanzibar Holdings"
    quiet = nf.openai.OpenAI(base_url=server.base_url, api_key="offline", record_content=False)

    @nf.workflow
    def private() -> str:
        messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": secret_question}]
        quiet.chat.completions.create(model=MODEL, messages=messages)
        stream_text(quiet.chat.completions.create(model=MODEL, messages=messages, stream=True))
        quiet.responses.create(model=MODEL, input=secret_question, instructions="Be brief")
        return "done"

    private()
    log = json.dumps(list(last_run().events()))
    reply = complete(MODEL, [("user", secret_question)], max_tokens=None).text
    assert "Zanzibar" not in log and reply[:20] not in log and "Be brief" not in log
    spans = llm_spans()
    assert all(s.attrs["gen_ai.usage.output_tokens"] > 0 for s in spans)
    assert spans[0].input["messages"] == "[redacted]" and spans[0].output == "[redacted]"

    quiet.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": secret_question}]
    )
    assert "Zanzibar" not in json.dumps(list(last_run().events())), "the one-call run too"
    quiet.close()


def test_a_missing_key_without_a_base_url_names_both_fixes(monkeypatch) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ADMIN_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(MissingCredentials) as info:
        nf.openai.OpenAI()
    message = str(info.value)
    assert (
        "OPENAI_API_KEY" in message and "base_url=" in message and "nbflow.llm.offline" in message
    )
    assert isinstance(info.value, openai.OpenAIError) and isinstance(info.value, nf.ConfigError)


def test_a_base_url_alone_is_enough_for_keyless_compatible_servers(monkeypatch, server) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with nf.openai.OpenAI(base_url=server.base_url) as keyless:
        assert keyless.chat.completions.create(model=MODEL, messages=MESSAGES).choices


def test_a_client_travels_as_its_arguments(server, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment")
    original = nf.openai.OpenAI(base_url=server.base_url, record_content=False, max_retries=1)
    blob = pickle.dumps(original)
    assert b"sk-from-the-environment" not in blob, "keys from the environment are not shipped"
    with pickle.loads(blob) as copy:
        assert copy.chat.completions.create(model=MODEL, messages=MESSAGES).choices
        assert copy._settings.retry.max_retries == 1
    assert llm_spans()[0].output == "[redacted]"
    original.close()


def test_nf_openai_is_nbflow_llm_and_importing_it_does_not_import_the_sdk() -> None:
    assert nf.openai is nf.llm and nf.openai.OpenAI is OpenAI
    code = (
        "import sys, nbflow, nbflow.llm as m; m.Retry; m.RateLimit; print('openai' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_default_client_uses_the_offline_model_and_says_so_once(monkeypatch, capsys) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(nbflow.llm.client, "_offline", None)
    client = nf.llm.default_client()
    try:
        assert client.chat.completions.create(model=MODEL, messages=MESSAGES).choices
        nf.llm.default_client().close()
        err = capsys.readouterr().err
        assert err.count("nbflow's offline model at") == 1 and "OPENAI_API_KEY" in err
        assert str(client.base_url).startswith(nf.llm.offline_server().base_url)
    finally:
        client.close()
        nf.llm.offline_server().close()


def test_default_client_uses_the_environment_when_it_is_set(monkeypatch, server, capsys) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "from-env")
    with nf.llm.default_client() as client:
        assert client.api_key == "from-env" and str(client.base_url).startswith(server.base_url)
    assert "offline model" not in capsys.readouterr().err


def test_with_options_changes_sdk_and_nbflow_options_and_stays_traced(client) -> None:
    quiet = client.with_options(timeout=5, record_content=False, max_retries=0)
    assert quiet.timeout == 5 and quiet._settings.retry.max_retries == 0
    assert quiet.chat.completions.create(model=MODEL, messages=MESSAGES).choices
    assert llm_spans()[0].output == "[redacted]"
    assert client._settings.record_content, "the original is unchanged"
