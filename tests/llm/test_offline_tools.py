"""Tool calls, JSON mode and structured outputs of the offline model, through the official SDK."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Literal

import httpx
import jsonschema
import openai
import pydantic
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam, ChatCompletionToolParam

from nbflow.llm._offline_schema import Filler, numbers_in
from nbflow.llm._offline_text import Picker, count_tokens
from nbflow.llm.offline import OfflineServer, serve_offline

MODEL = "gpt-4o-mini"
AUTH = {"authorization": "Bearer offline"}
WEATHER_PARAMS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city", "unit", "days"],
    "additionalProperties": False,
}
ADD_PARAMS: dict[str, Any] = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"],
}
WEATHER: ChatCompletionToolParam = {
    "type": "function",
    "function": {"name": "get_weather", "description": "Forecast", "parameters": WEATHER_PARAMS},
}
ADD: ChatCompletionToolParam = {
    "type": "function",
    "function": {"name": "add_numbers", "parameters": ADD_PARAMS},
}
QUESTION = "What is the weather in Paris over 3 days in fahrenheit? Also add numbers 12 and 30."


@pytest.fixture(scope="module")
def server() -> Iterator[OfflineServer]:
    with serve_offline() as running:
        yield running


@pytest.fixture(scope="module")
def client(server: OfflineServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key="offline", max_retries=0) as sdk:
        yield sdk


def called(reply: Any) -> list[tuple[str, str]]:
    """(name, arguments) of each tool call of a chat completion or a Responses API response."""
    if isinstance(reply, ChatCompletion):
        calls: list[Any] = reply.choices[0].message.tool_calls or []
        return [(c.function.name, c.function.arguments) for c in calls]
    return [(i.name, i.arguments) for i in reply.output if i.type == "function_call"]


def ask(client: openai.OpenAI, content: str = QUESTION, **options: Any) -> ChatCompletion:
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": content}]
    reply: ChatCompletion = client.chat.completions.create(
        model=MODEL, messages=options.pop("messages", messages), **options
    )
    return reply


# --- chat completions: tool calls -----------------------------------------------------------
def test_chat_calls_each_mentioned_tool_with_arguments_valid_for_its_schema(
    client: openai.OpenAI,
) -> None:
    reply = ask(client, tools=[WEATHER, ADD])
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = called(reply)
    assert [name for name, _ in calls] == ["get_weather", "add_numbers"]
    weather = json.loads(calls[0][1])
    jsonschema.validate(weather, WEATHER_PARAMS)
    # Words and numbers after each tool's mention fill its arguments.
    assert weather == {"city": "Paris", "unit": "fahrenheit", "days": 3}
    assert json.loads(calls[1][1]) == {"a": 12, "b": 30}
    assert len({c.id for c in choice.message.tool_calls or []}) == 2
    assert reply.usage is not None
    spent = sum(count_tokens(name) + count_tokens(arguments) for name, arguments in calls)
    assert reply.usage.completion_tokens == spent
    # Tool definitions are part of the prompt, as upstream counts them.
    plain = ask(client).usage
    assert plain is not None and reply.usage.prompt_tokens > plain.prompt_tokens


def test_chat_tool_calls_are_deterministic(client: openai.OpenAI) -> None:
    first, second = ask(client, tools=[WEATHER, ADD]), ask(client, tools=[WEATHER, ADD])
    assert first.choices[0].message.tool_calls == second.choices[0].message.tool_calls


def test_chat_answers_citing_tool_results_once_they_follow_the_question(
    client: openai.OpenAI,
) -> None:
    messages: list[Any] = [{"role": "user", "content": QUESTION}]
    first = ask(client, messages=messages, tools=[WEATHER, ADD])
    messages.append(first.choices[0].message)  # the SDK object, passed back as users do
    outputs = {"get_weather": '{"temp_f": 71}', "add_numbers": "42"}
    ids = [c.id for c in first.choices[0].message.tool_calls or []]
    for call_id, (name, _) in zip(ids, called(first), strict=True):
        messages.append({"role": "tool", "tool_call_id": call_id, "content": outputs[name]})
    final = ask(client, messages=messages, tools=[WEATHER, ADD])
    assert final.choices[0].finish_reason == "stop"
    text = final.choices[0].message.content or ""
    assert text.startswith('get_weather returned {"temp_f": 71}. add_numbers returned 42. ')
    # A new question after the results asks for tools again.
    messages.append({"role": "user", "content": "And the weather in Rome?"})
    again = ask(client, messages=messages, tools=[WEATHER, ADD])
    assert again.choices[0].finish_reason == "tool_calls"


def test_auto_without_a_mentioned_tool_answers_in_text(client: openai.OpenAI) -> None:
    reply = ask(client, "Tell me a story about otters", tools=[WEATHER, ADD])
    assert reply.choices[0].finish_reason == "stop"
    assert reply.choices[0].message.tool_calls is None
    assert reply.choices[0].message.content


def test_tool_choice_none_required_named_and_sequential(client: openai.OpenAI) -> None:
    story = "Tell me a story about otters"

    def names(reply: ChatCompletion) -> list[str]:
        return [name for name, _ in called(reply)]

    assert names(ask(client, tools=[WEATHER, ADD], tool_choice="none")) == []
    assert names(ask(client, story, tools=[WEATHER, ADD], tool_choice="required")) == [
        "get_weather"
    ]
    named = {"type": "function", "function": {"name": "add_numbers"}}
    assert names(ask(client, story, tools=[WEATHER, ADD], tool_choice=named)) == ["add_numbers"]
    assert names(ask(client, tools=[WEATHER, ADD], parallel_tool_calls=False)) == ["get_weather"]


def test_a_tool_choice_naming_no_tool_is_an_openai_style_400(client: openai.OpenAI) -> None:
    named = {"type": "function", "function": {"name": "nope"}}
    with pytest.raises(openai.BadRequestError, match="nope"):
        ask(client, tools=[WEATHER], tool_choice=named)


def test_chat_stream_sends_tool_call_deltas_like_upstream(client: openai.OpenAI) -> None:
    plain = ask(client, tools=[WEATHER, ADD])
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": QUESTION}],
            tools=[WEATHER, ADD],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content is None
    deltas: list[Any] = [
        d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or []
    ]
    opening = [d for d in deltas if d.id is not None]
    assert [(d.index, d.function.name, d.function.arguments) for d in opening] == [
        (0, "get_weather", ""),
        (1, "add_numbers", ""),
    ]
    joined = ["".join(d.function.arguments or "" for d in deltas if d.index == i) for i in (0, 1)]
    assert joined == [arguments for _, arguments in called(plain)]
    assert len(deltas) > 2 * len(opening)  # arguments arrive a token at a time
    assert chunks[-2].choices[0].finish_reason == "tool_calls"
    assert chunks[-1].usage == plain.usage


def test_sdk_stream_helper_assembles_streamed_tool_calls(client: openai.OpenAI) -> None:
    plain = ask(client, tools=[WEATHER, ADD])
    with client.chat.completions.stream(
        model=MODEL, messages=[{"role": "user", "content": QUESTION}], tools=[WEATHER, ADD]
    ) as stream:
        final = stream.get_final_completion()
    assert called(final) == called(plain)


# --- chat completions: JSON mode and structured outputs -------------------------------------
class Step(pydantic.BaseModel):
    explanation: str
    output: str


class Solution(pydantic.BaseModel):
    steps: list[Step]
    final_answer: str
    confidence: float = pydantic.Field(ge=0, le=1)
    kind: Literal["algebra", "geometry"]
    note: str | None


def test_parse_returns_an_instance_of_the_pydantic_model(client: openai.OpenAI) -> None:
    reply = client.chat.completions.parse(
        model=MODEL,
        messages=[{"role": "user", "content": "Solve 8x + 31 = 2, a geometry puzzle"}],
        response_format=Solution,
    )
    parsed = reply.choices[0].message.parsed
    assert isinstance(parsed, Solution)
    assert parsed.kind == "geometry"  # an enum value the question names is the one chosen
    assert len(parsed.steps) == 2 and all(s.explanation.endswith(".") for s in parsed.steps)
    content = reply.choices[0].message.content or ""
    assert reply.usage is not None and reply.usage.completion_tokens == count_tokens(content)


def test_pydantic_function_tool_arguments_parse_into_the_model(client: openai.OpenAI) -> None:
    class GetWeather(pydantic.BaseModel):
        city: str
        unit: Literal["celsius", "fahrenheit"]

    reply = client.chat.completions.parse(
        model=MODEL,
        messages=[{"role": "user", "content": "Weather in Oslo, in celsius?"}],
        tools=[openai.pydantic_function_tool(GetWeather, name="get_weather")],
    )
    call: Any = (reply.choices[0].message.tool_calls or [])[0]
    assert call.function.parsed_arguments == GetWeather(city="Oslo", unit="celsius")


def test_json_mode_replies_with_a_json_object(client: openai.OpenAI) -> None:
    reply = ask(client, "Reply in JSON: what are streams?", response_format={"type": "json_object"})
    value = json.loads(reply.choices[0].message.content or "")
    assert isinstance(value, dict) and isinstance(value["answer"], str)


def test_json_mode_without_the_word_json_is_refused_as_upstream_does(
    client: openai.OpenAI,
) -> None:
    with pytest.raises(openai.BadRequestError, match="json"):
        ask(client, "What are streams?", response_format={"type": "json_object"})


def test_a_token_cap_cuts_structured_output_and_parse_says_length(client: openai.OpenAI) -> None:
    with pytest.raises(openai.LengthFinishReasonError):
        client.chat.completions.parse(
            model=MODEL,
            messages=[{"role": "user", "content": "Solve 8x + 31 = 2"}],
            response_format=Solution,
            max_tokens=5,
        )


# --- responses API ---------------------------------------------------------------------------
RESPONSE_TOOLS: list[Any] = [
    {"type": "function", "name": "get_weather", "parameters": WEATHER_PARAMS, "strict": True},
    {"type": "function", "name": "add_numbers", "parameters": ADD_PARAMS},
]


def test_responses_call_tools_then_answer_from_function_call_outputs(
    client: openai.OpenAI,
) -> None:
    first = client.responses.create(model=MODEL, input=QUESTION, tools=RESPONSE_TOOLS)
    calls = [item for item in first.output if item.type == "function_call"]
    assert [c.name for c in calls] == ["get_weather", "add_numbers"]
    jsonschema.validate(json.loads(calls[0].arguments), WEATHER_PARAMS)
    echoed: Any = first.tools
    assert echoed[0].name == "get_weather"
    items: list[Any] = [{"role": "user", "content": QUESTION}]
    items += [c.model_dump(exclude_none=True) for c in calls]
    items += [{"type": "function_call_output", "call_id": c.call_id, "output": "ok"} for c in calls]
    final = client.responses.create(model=MODEL, input=items, tools=RESPONSE_TOOLS)
    assert final.output[0].type == "message"
    assert final.output_text.startswith("get_weather returned ok. add_numbers returned ok. ")


def test_responses_stream_sends_function_call_argument_deltas(client: openai.OpenAI) -> None:
    plain = client.responses.create(model=MODEL, input=QUESTION, tools=RESPONSE_TOOLS)
    events = list(
        client.responses.create(model=MODEL, input=QUESTION, tools=RESPONSE_TOOLS, stream=True)
    )
    types = [e.type for e in events]
    assert types[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert types[-1] == "response.completed"
    for index, (_, arguments) in enumerate(called(plain)):
        deltas = [
            e.delta
            for e in events
            if e.type == "response.function_call_arguments.delta" and e.output_index == index
        ]
        done = next(
            e
            for e in events
            if e.type == "response.function_call_arguments.done" and e.output_index == index
        )
        assert "".join(deltas) == done.arguments == arguments
    with client.responses.stream(model=MODEL, input=QUESTION, tools=RESPONSE_TOOLS) as stream:
        final = stream.get_final_response()
    assert called(final) == called(plain)


def test_responses_parse_fills_the_text_format_model(client: openai.OpenAI) -> None:
    response = client.responses.parse(
        model=MODEL, input="Solve 8x + 31 = 2 with algebra", text_format=Solution
    )
    assert isinstance(response.output_parsed, Solution)
    assert response.output_parsed.kind == "algebra"
    assert response.text is not None and response.text.format is not None
    assert response.text.format.type == "json_schema"


def test_bad_tools_are_a_400_over_plain_http(server: OfflineServer) -> None:
    with httpx.Client(base_url=server.url, headers=AUTH) as http:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "tools": "nope"}
        response = http.post("/v1/chat/completions", json=body)
        assert response.status_code == 400
        assert response.json()["error"]["type"] == "invalid_request_error"


# --- the schema filler on its own ----------------------------------------------------------
SCHEMAS: list[dict[str, Any]] = [
    {"type": "string", "format": "date-time"},
    {"type": "string", "minLength": 30, "maxLength": 40},
    {"type": "integer", "minimum": 5, "maximum": 9},
    {"type": "integer", "exclusiveMinimum": 100, "multipleOf": 7},
    {"type": "number", "maximum": -3.5},
    {"type": ["string", "null"]},
    {"type": "array", "items": {"type": "integer"}, "minItems": 3, "uniqueItems": True},
    {"type": "array", "items": {"type": "string"}, "maxItems": 1},
    {"type": "array", "prefixItems": [{"type": "boolean"}, {"const": "x"}]},
    {"anyOf": [{"type": "null"}, {"type": "object", "properties": {"a": {"type": "number"}}}]},
    {
        "allOf": [
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            {"properties": {"b": {"enum": [1, 2]}}, "required": ["b"]},
        ]
    },
    {  # recursive, as pydantic writes a tree: filling must end
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                    "parent": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]},
                },
                "required": ["name", "children", "parent"],
            }
        },
        "$ref": "#/$defs/Node",
    },
    {"type": "string", "format": "uuid"},
]


@pytest.mark.parametrize("schema", SCHEMAS, ids=[json.dumps(s)[:40] for s in SCHEMAS])
def test_filler_builds_valid_instances(schema: dict[str, Any]) -> None:
    filler = Filler(
        schema,
        picker=Picker("seed"),
        strings=lambda: "word",
        numbers=numbers_in("take 4 or 3.5 then 112"),
        mentioned=lambda value: False,
    )
    value = filler.instance()
    jsonschema.validate(value, schema, format_checker=jsonschema.FormatChecker())
    assert json.loads(json.dumps(value)) == value


def test_numbers_in_reads_signed_and_decimal_numbers_but_not_words() -> None:
    assert numbers_in("add -2 and 3.5 to x8 and 8x, then 10.") == [-2.0, 3.5, 10.0]


def test_filler_offers_a_number_that_did_not_fit_to_the_next_field() -> None:
    schema = {
        "type": "object",
        "properties": {
            "month": {"type": "integer", "maximum": 12},
            "year": {"type": "integer", "minimum": 1900},
        },
        "required": ["month", "year"],
    }
    filler = Filler(
        schema,
        picker=Picker("s"),
        strings=lambda: "w",
        numbers=numbers_in("in 2024, month 5"),
        mentioned=lambda value: False,
    )
    assert filler.instance() == {"month": 5, "year": 2024}
