"""Agent loops and structured outputs through the traced client, against the offline model."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import openai
import pydantic
import pytest

import nbflow as nf
from nbflow._fold import SpanState
from nbflow.llm import OpenAI
from nbflow.llm.offline import OfflineServer

from ..conftest import last_run

MODEL = "gpt-4o-mini"
QUESTION = "What is the weather in Lisbon, and please add 19 and 23."


@nf.tool
def get_weather(city: str) -> dict[str, Any]:
    """The current weather in a city."""
    return {"city": city, "temp_c": 21}


@nf.tool
def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


TOOLS = [get_weather, add]


@pytest.fixture
def client(server: OfflineServer) -> Iterator[OpenAI]:
    with nf.openai.OpenAI(base_url=server.base_url, api_key="offline") as traced:
        yield traced


def spans(run: Any = None) -> list[SpanState]:
    return list((run or last_run()).trace().state.spans.values())


def test_a_chat_agent_loop_is_llm_then_tool_spans_then_llm(client: OpenAI) -> None:
    @nf.workflow
    def agent(question: str) -> str:
        messages: list[Any] = [{"role": "user", "content": question}]
        while True:
            reply = client.chat.completions.create(
                model=MODEL, messages=messages, tools=nf.tool_definitions(TOOLS)
            )
            results = nf.call_tools(reply, TOOLS)
            if not results:
                return str(reply.choices[0].message.content)
            messages += results

    answer = agent(QUESTION)
    assert answer.startswith('get_weather returned {"city":"Lisbon","temp_c":21}. add returned 42.')
    root, first, weather, adding, last = spans()
    assert [s.kind for s in (root, first, weather, adding, last)] == [
        "workflow",
        "llm",
        "tool",
        "tool",
        "llm",
    ]
    assert {s.parent_id for s in (first, weather, adding, last)} == {root.span_id}
    assert first.attrs["gen_ai.response.finish_reasons"] == ["tool_calls"]
    asked = first.output["tool_calls"]
    assert [c["name"] for c in asked] == ["get_weather", "add"]
    assert weather.input == {"city": "Lisbon"} and adding.input == {"a": 19, "b": 23}
    assert weather.attrs["gen_ai.tool.call.arguments"] == asked[0]["arguments"]
    assert adding.output == 42
    frame = last_run().trace().spans
    assert list(frame["kind"]) == ["workflow", "llm", "tool", "tool", "llm"]
    assert frame["total_tokens"].iloc[1] > 0 and frame["total_tokens"].iloc[2] == 0


@nf.workflow
def remote_agent(base_url: str, question: str) -> str:
    with nf.openai.OpenAI(base_url=base_url, api_key="offline") as client:
        messages: list[Any] = [{"role": "user", "content": question}]
        while True:
            reply = client.chat.completions.create(
                model=MODEL, messages=messages, tools=nf.tool_definitions(TOOLS)
            )
            results = nf.call_tools(reply, TOOLS)
            if not results:
                return str(reply.choices[0].message.content)
            messages += results


def test_an_agent_on_the_runtime_logs_its_tool_spans(
    server: OfflineServer, runtime: Any, worker: Any
) -> None:
    worker()
    run = remote_agent.submit(server.base_url, QUESTION)
    assert run.result(timeout_s=30).startswith("get_weather returned")
    frame = run.trace().spans
    assert list(frame["kind"]) == ["workflow", "llm", "tool", "tool", "llm"]
    assert list(frame["name"])[2:4] == ["get_weather", "add"]
    assert list(frame["status"]) == ["ok"] * 5


def test_a_responses_api_agent_loop_feeds_function_call_outputs_back(client: OpenAI) -> None:
    @nf.workflow
    def agent(question: str) -> str:
        items: list[Any] = [{"role": "user", "content": question}]
        tools = nf.tool_definitions(TOOLS, api="responses")
        while True:
            response = client.responses.create(model=MODEL, input=items, tools=tools)
            results = nf.call_tools(response, TOOLS)
            if not results:
                return str(response.output_text)
            items += results

    assert agent(QUESTION).startswith("get_weather returned")
    kinds = [s.kind for s in spans()]
    assert kinds == ["workflow", "llm", "tool", "tool", "llm"]


def test_an_async_agent_with_the_async_client(server: OfflineServer) -> None:
    @nf.tool
    async def lookup(city: str) -> str:
        await asyncio.sleep(0)
        return f"{city}: sunny"

    async def main() -> str:
        async with nf.openai.AsyncOpenAI(base_url=server.base_url, api_key="offline") as client:

            @nf.workflow
            async def agent() -> str:
                messages: list[Any] = [{"role": "user", "content": "Please lookup Porto"}]
                reply = await client.chat.completions.create(
                    model=MODEL, messages=messages, tools=nf.tool_definitions([lookup])
                )
                messages += await nf.call_tools_async(reply, [lookup])
                final = await client.chat.completions.create(model=MODEL, messages=messages)
                return str(final.choices[0].message.content)

            return str(await agent())

    assert asyncio.run(main()).startswith("lookup returned Porto: sunny.")
    assert [s.kind for s in spans()] == ["workflow", "llm", "tool", "llm"]


# --- structured outputs ---------------------------------------------------------------------
class Plan(pydantic.BaseModel):
    title: str
    steps: list[str]


class Strict(pydantic.BaseModel):
    title: str

    @pydantic.field_validator("title")
    @classmethod
    def never(cls, value: str) -> str:
        raise ValueError("titles are never good enough")


def test_parse_is_traced_with_the_parsed_reply(client: OpenAI) -> None:
    reply = client.chat.completions.parse(
        model=MODEL, messages=[{"role": "user", "content": "Plan a release"}], response_format=Plan
    )
    assert isinstance(reply.choices[0].message.parsed, Plan)
    (span,) = spans()
    assert span.status == "ok" and span.attrs["gen_ai.usage.output_tokens"] > 0


def test_a_reply_that_does_not_validate_is_a_clear_error_and_the_span_keeps_its_text(
    client: OpenAI,
) -> None:
    with pytest.raises(nf.StructuredOutputError) as caught:
        client.chat.completions.parse(
            model=MODEL,
            messages=[{"role": "user", "content": "Plan a release"}],
            response_format=Strict,
        )
    error = caught.value
    assert str(error).startswith(f"chat {MODEL}: the reply is not a valid Strict: ")
    assert "titles are never good enough" in str(error)
    assert error.raw.startswith('{"title":"') and error.raw in str(error)
    assert isinstance(error.__cause__, pydantic.ValidationError)
    assert isinstance(error, ValueError)
    (span,) = spans()
    assert (span.status, span.error_type) == ("error", "StructuredOutputError")
    assert span.attrs["nbflow.output.raw"] == error.raw
    assert span.attrs["gen_ai.usage.output_tokens"] > 0  # the call was paid for
    assert error.reply is not None and error.reply.usage is not None


def test_a_reply_cut_by_the_token_cap_says_so(client: OpenAI) -> None:
    with pytest.raises(nf.StructuredOutputError, match="cut at the output token cap") as caught:
        client.chat.completions.parse(
            model=MODEL,
            messages=[{"role": "user", "content": "Plan a release"}],
            response_format=Plan,
            max_tokens=4,
        )
    assert isinstance(caught.value.__cause__, openai.LengthFinishReasonError)
    assert caught.value.raw == '{"title"'  # four tokens of the JSON it was writing
    assert spans()[0].attrs["nbflow.output.raw"] == '{"title"'


def test_responses_parse_is_traced_and_fails_the_same_way(client: OpenAI) -> None:
    parsed = client.responses.parse(model=MODEL, input="Plan a release", text_format=Plan)
    assert isinstance(parsed.output_parsed, Plan)
    assert spans()[0].kind == "llm"
    with pytest.raises(nf.StructuredOutputError, match="responses gpt-4o-mini"):
        client.responses.parse(model=MODEL, input="Plan a release", text_format=Strict)
    assert spans()[0].attrs["nbflow.output.raw"].startswith('{"title":')


def test_without_recorded_content_the_raw_reply_stays_out_of_the_trace(
    server: OfflineServer,
) -> None:
    with (
        nf.openai.OpenAI(
            base_url=server.base_url, api_key="offline", record_content=False
        ) as private,
        pytest.raises(nf.StructuredOutputError) as caught,
    ):
        private.chat.completions.parse(
            model=MODEL,
            messages=[{"role": "user", "content": "Plan a secret release"}],
            response_format=Strict,
        )
    assert caught.value.raw.startswith('{"title":')  # the caller still gets it
    (span,) = spans()
    assert span.attrs["nbflow.output.raw"] == "[redacted]"
    assert caught.value.raw not in (span.error or "")


def test_parse_through_the_raw_response_still_retries_a_rate_limited_call(
    client: OpenAI, server: OfflineServer
) -> None:
    server.inject("429", count=1, retry_after_s=0.01)
    reply = client.chat.completions.parse(
        model=MODEL, messages=[{"role": "user", "content": "Plan a release"}], response_format=Plan
    )
    assert isinstance(reply.choices[0].message.parsed, Plan)
    (span,) = spans()
    assert (span.status, span.attempts) == ("ok", 2)
    assert span.retries[0]["error_type"] == "RateLimitError"
