"""Tools: definitions from type hints, checked arguments, tool spans, running a reply's calls."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any, Literal

import cloudpickle
import pydantic
import pytest
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

import nbflow as nf

from .conftest import last_run


class Place(pydantic.BaseModel):
    city: str
    country: str = "FR"


@nf.tool
def get_weather(
    place: Place,
    unit: Literal["celsius", "fahrenheit"] = "celsius",
    days: Annotated[int, pydantic.Field(ge=1, le=7, description="How many days ahead")] = 1,
) -> dict[str, Any]:
    """The forecast for a place.

    Longer notes that the model does not need.
    """
    return {"city": place.city, "unit": unit, "days": days}


@nf.tool(name="add", description="Adds two integers.")
def add_numbers(a: int, b: int) -> int:
    return a + b


def chat_reply(*calls: tuple[str, str]) -> ChatCompletion:
    """A chat completion asking for ``calls``, as the SDK parses one off the wire."""
    tool_calls = [
        {"id": f"call_{i}", "type": "function", "function": {"name": n, "arguments": a}}
        for i, (n, a) in enumerate(calls)
    ]
    message = {"role": "assistant", "content": None, "tool_calls": tool_calls}
    return ChatCompletion.model_validate(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
        }
    )


def tool_spans(run: Any = None) -> list[Any]:
    state = (run or last_run()).trace().state
    return [s for s in state.spans.values() if s.kind == "tool"]


# --- definitions ---------------------------------------------------------------------------
def test_definition_comes_from_type_hints_and_the_docstrings_first_paragraph() -> None:
    definition = get_weather.definition()
    function = definition["function"]
    assert definition["type"] == "function"
    assert function["name"] == "get_weather"
    assert function["description"] == "The forecast for a place."
    params = function["parameters"]
    assert params["required"] == ["place"]
    assert params["additionalProperties"] is False
    assert params["properties"]["unit"]["enum"] == ["celsius", "fahrenheit"]
    days = params["properties"]["days"]
    assert (days["minimum"], days["maximum"], days["description"]) == (1, 7, "How many days ahead")
    assert params["properties"]["place"] == {"$ref": "#/$defs/Place"}
    assert params["$defs"]["Place"]["required"] == ["city"]


def test_responses_definitions_are_flat_and_names_and_descriptions_can_be_given() -> None:
    assert [dict(d) for d in nf.tool_definitions([add_numbers], api="responses")] == [
        {
            "type": "function",
            "name": "add",
            "description": "Adds two integers.",
            "parameters": add_numbers.parameters,
        }
    ]
    with pytest.raises(nf.ConfigError, match="api="):
        add_numbers.definition(api="other")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("def f(*args): ...", "passable by name"),
        ("def f(**kw): ...", "passable by name"),
        ("def f(a, /): ...", "passable by name"),
    ],
)
def test_parameters_a_model_cannot_name_are_refused(source: str, message: str) -> None:
    scope: dict[str, Any] = {}
    exec(source, scope)
    with pytest.raises(nf.ConfigError, match=message):
        nf.tool(scope["f"])


def test_names_the_api_would_refuse_are_refused() -> None:
    with pytest.raises(nf.ConfigError, match="tool name"):
        nf.tool(lambda: 1)  # "<lambda>"
    with pytest.raises(nf.ConfigError, match="tool name"):
        nf.tool(name="has space")(add_numbers.spec.fn)


class Opaque:
    pass


def test_a_type_without_a_json_schema_or_a_hint_that_does_not_resolve_is_a_clear_error() -> None:
    @nf.tool
    def f(x: Opaque) -> None: ...

    with pytest.raises(nf.ConfigError, match="no JSON schema"):
        _ = f.parameters

    class Local:  # this module's hints are strings, and a local class is not in its globals
        pass

    @nf.tool
    def g(x: Local) -> None: ...

    with pytest.raises(nf.ConfigError, match="type hints cannot be resolved"):
        _ = g.parameters


# --- calling --------------------------------------------------------------------------------
def test_a_tool_called_directly_checks_and_converts_its_arguments() -> None:
    assert get_weather({"city": "Lyon"}, days="3") == {"city": "Lyon", "unit": "celsius", "days": 3}
    span = tool_spans()[0]
    assert span.input == {"place": {"city": "Lyon"}, "days": "3"}  # as the caller passed them
    with pytest.raises(nf.ToolArgumentsError, match="days"):
        get_weather({"city": "Lyon"}, days=9)
    failed = tool_spans()[0]
    assert (failed.status, failed.error_type) == ("error", "ToolArgumentsError")


def test_tool_spans_have_kind_tool_in_the_spans_frame_and_execute_tool_attributes() -> None:
    @nf.workflow
    def run() -> int:
        return int(add_numbers(2, 3))

    assert run() == 5
    spans = last_run().trace().spans
    assert list(spans["kind"]) == ["workflow", "tool"]
    attrs = tool_spans()[0].attrs
    assert attrs["gen_ai.operation.name"] == "execute_tool"
    assert attrs["gen_ai.tool.name"] == "add"
    assert attrs["gen_ai.tool.description"] == "Adds two integers."
    assert "gen_ai.tool.call.id" not in attrs  # called from Python, not by a model


def test_with_retry_copies_stay_tools_with_the_same_definition() -> None:
    attempts: list[int] = []

    @nf.tool
    def flaky(n: int) -> int:
        attempts.append(n)
        if len(attempts) < 2:
            raise ConnectionError("down")
        return n

    nf.set_testing(True)
    try:
        retried = flaky.with_retry(3, on=ConnectionError)
        assert isinstance(retried, nf.Tool) and retried.definition() == flaky.definition()
        assert retried(n=4) == 4 and attempts == [4, 4]
    finally:
        nf.set_testing(False)


def test_a_tool_pickled_by_value_still_checks_arguments() -> None:
    @nf.tool
    def shout(text: str, times: int = 1) -> str:
        return text.upper() * times

    copy = cloudpickle.loads(cloudpickle.dumps(shout))
    assert copy(text="a", times="2") == "AA"
    assert copy.parameters == shout.parameters
    with pytest.raises(nf.ToolArgumentsError):
        copy(text="a", times="many")


# --- running the calls of a reply ----------------------------------------------------------
def test_call_tools_runs_chat_calls_in_order_and_returns_the_messages_to_send_back() -> None:
    reply = chat_reply(
        ("get_weather", '{"place": {"city": "Nice"}, "days": 2}'), ("add", '{"a": 1, "b": 2}')
    )

    @nf.workflow
    def agent() -> list[dict[str, Any]]:
        return nf.call_tools(reply, [get_weather, add_numbers])

    messages = agent()
    assert messages[0] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_0",
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "arguments": '{"place": {"city": "Nice"}, "days": 2}',
                },
            },
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'},
            },
        ],
    }
    assert messages[1:] == [
        {
            "role": "tool",
            "tool_call_id": "call_0",
            "content": '{"city":"Nice","unit":"celsius","days":2}',
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "3"},
    ]
    weather, add = tool_spans()
    assert weather.attrs["gen_ai.tool.call.id"] == "call_0"
    assert weather.attrs["gen_ai.tool.call.arguments"] == '{"place": {"city": "Nice"}, "days": 2}'
    assert add.output == 3


def test_call_tools_returns_nothing_for_a_reply_without_calls() -> None:
    assert nf.call_tools(chat_reply(), [add_numbers]) == []


def test_arguments_that_are_not_json_fail_a_tool_span_that_keeps_the_raw_text() -> None:
    reply = chat_reply(("add", '{"a": 1, "b": '))

    @nf.workflow
    def agent() -> list[dict[str, Any]]:
        return nf.call_tools(reply, [add_numbers])

    messages = agent()
    assert messages[1]["content"].startswith("error: ToolArgumentsError: tool 'add' got arguments")
    span = tool_spans()[0]
    assert (span.status, span.error_type) == ("error", "ToolArgumentsError")
    assert span.attrs["gen_ai.tool.call.arguments"] == '{"a": 1, "b": '
    assert '{"a": 1, "b": ' in (span.error or "")


def test_invalid_arguments_go_back_to_the_model_or_raise_when_asked() -> None:
    reply = chat_reply(("add", '{"a": "one", "b": 2}'))
    back = nf.call_tools(reply, [add_numbers])
    assert "a: Input should be a valid integer" in back[1]["content"]
    with pytest.raises(nf.ToolArgumentsError) as caught:
        nf.call_tools(reply, [add_numbers], on_error="raise")
    assert caught.value.tool == "add"


def test_a_tool_the_model_made_up_is_answered_with_an_error() -> None:
    back = nf.call_tools(chat_reply(("delete_everything", "{}")), [add_numbers])
    assert "'delete_everything', which is not among the tools" in back[1]["content"]


def test_a_failing_tool_reports_its_own_error_to_the_model() -> None:
    @nf.tool
    def broken() -> None:
        raise RuntimeError("disk on fire")

    back = nf.call_tools(chat_reply(("broken", "")), [broken])
    assert back[1]["content"] == "error: RuntimeError: disk on fire"
    with pytest.raises(RuntimeError, match="disk on fire"):
        nf.call_tools(chat_reply(("broken", "")), [broken], on_error="raise")


def test_call_tools_reads_responses_api_function_calls() -> None:
    response = Response.model_validate(
        {
            "id": "resp_1",
            "object": "response",
            "created_at": 0,
            "model": "m",
            "output": [
                {
                    "type": "function_call",
                    "id": "fc_1",
                    "call_id": "call_9",
                    "name": "add",
                    "arguments": '{"a": 20, "b": 22}',
                    "status": "completed",
                }
            ],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
        }
    )
    assert nf.call_tools(response, [add_numbers]) == [
        {
            "type": "function_call",
            "call_id": "call_9",
            "name": "add",
            "arguments": '{"a": 20, "b": 22}',
        },
        {"type": "function_call_output", "call_id": "call_9", "output": "42"},
    ]


def test_async_tools_run_concurrently_with_call_tools_async() -> None:
    # Each tool waits for the other to have started: they only finish if they overlap.
    started = {"left": asyncio.Event(), "right": asyncio.Event()}

    @nf.tool
    async def left() -> str:
        started["left"].set()
        await asyncio.wait_for(started["right"].wait(), 5)
        return "L"

    @nf.tool
    async def right() -> str:
        started["right"].set()
        await asyncio.wait_for(started["left"].wait(), 5)
        return "R"

    @nf.workflow
    async def agent() -> list[dict[str, Any]]:
        return await nf.call_tools_async(chat_reply(("left", "{}"), ("right", "{}")), [left, right])

    messages = asyncio.run(agent())
    assert [m["content"] for m in messages[1:]] == ["L", "R"]
    assert [s.attrs["gen_ai.tool.call.id"] for s in tool_spans()] == ["call_0", "call_1"]


def test_an_async_tool_in_sync_call_tools_is_a_clear_error() -> None:
    @nf.tool
    async def later() -> int:
        return 1

    with pytest.raises(nf.ConfigError, match="call_tools_async"):
        nf.call_tools(chat_reply(("later", "{}")), [later])


def test_call_tools_takes_only_tools() -> None:
    with pytest.raises(nf.ConfigError, match=r"@nf\.tool"):
        nf.call_tools(chat_reply(("add", "{}")), [nf.component(json.dumps)])  # type: ignore[list-item]
