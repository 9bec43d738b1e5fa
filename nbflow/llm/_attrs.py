"""What an llm span says about a call: OpenTelemetry GenAI attributes and previews.

Attribute names follow the OpenTelemetry GenAI semantic conventions where one
exists (``gen_ai.*``, ``server.*``); nbflow's own are ``nbflow.*``. Readers are
duck-typed, so OpenAI-compatible servers that leave fields out still work.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nbflow._preview import preview
from nbflow.constants import REDACTED
from nbflow.llm.pricing import estimate_cost

Attrs = dict[str, Any]

INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
CACHED_TOKENS = "gen_ai.usage.cache_read.input_tokens"
REASONING_TOKENS = "gen_ai.usage.reasoning.output_tokens"
COST = "nbflow.cost_usd"

# Request parameters recorded on the span, by the SDK's argument name.
PARAMS = {
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "max_tokens": "gen_ai.request.max_tokens",
    "max_completion_tokens": "gen_ai.request.max_tokens",
    "max_output_tokens": "gen_ai.request.max_tokens",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
    "seed": "gen_ai.request.seed",
    "n": "gen_ai.request.choice.count",
    "stop": "gen_ai.request.stop_sequences",
    "dimensions": "gen_ai.embeddings.dimension.count",
    "encoding_format": "gen_ai.request.encoding_formats",
    "reasoning_effort": "openai.request.reasoning_effort",
    "service_tier": "openai.request.service_tier",
}
OUTPUT_CAPS = ("max_completion_tokens", "max_tokens", "max_output_tokens")
# Arguments that carry the conversation: hidden when record_content=False.
CONTENT_ARGS = ("messages", "input", "instructions", "prompt", "prediction")
# Never recorded: transport details that may carry credentials.
HIDDEN_ARGS = frozenset({"extra_headers", "extra_query", "extra_body", "timeout"})


def given(value: Any) -> bool:
    """False for None and the SDK's "not given" sentinels (``NOT_GIVEN``, ``omit``)."""
    return value is not None and type(value).__name__ not in ("NotGiven", "Omit")


def request_attrs(operation: str, request: Mapping[str, Any]) -> Attrs:
    attrs: Attrs = {"gen_ai.operation.name": operation}
    for arg, value in request.items():
        name = PARAMS.get(arg)
        if (
            name is not None
            and given(value)
            and isinstance(value, str | int | float | bool | list | tuple)
        ):
            attrs[name] = list(value) if isinstance(value, list | tuple) else value
    if request.get("stream") is True:
        attrs["nbflow.stream"] = True
    return attrs


def prompt_chars(request: Mapping[str, Any]) -> int:
    """Characters of text in the prompt, for token estimates before the call."""
    return sum(_chars(request.get(arg)) for arg in CONTENT_ARGS)


def _chars(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, Mapping):
        return sum(_chars(value.get(k)) for k in ("content", "text", "input", "output"))
    if isinstance(value, list | tuple):
        return sum(_chars(v) for v in value)
    return 0


def output_cap(request: Mapping[str, Any]) -> int | None:
    for arg in OUTPUT_CAPS:
        value = request.get(arg)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


# --- responses -------------------------------------------------------------------------
def usage_attrs(usage: Any, model: str | None) -> Attrs:
    """Token counts from a chat, Responses or embeddings usage object, with the cost."""
    if usage is None:
        return {}
    inp = _int(usage, "prompt_tokens", "input_tokens")
    out = _int(usage, "completion_tokens", "output_tokens")
    in_details = _first(usage, "prompt_tokens_details", "input_tokens_details")
    out_details = _first(usage, "completion_tokens_details", "output_tokens_details")
    cached = _int(in_details, "cached_tokens")
    attrs: Attrs = {INPUT_TOKENS: inp, OUTPUT_TOKENS: out}
    if cached:
        attrs[CACHED_TOKENS] = cached
    reasoning = _int(out_details, "reasoning_tokens")
    if reasoning:
        attrs[REASONING_TOKENS] = reasoning
    cost = None
    if model:
        cost = estimate_cost(model, input_tokens=inp, output_tokens=out, cached_input_tokens=cached)
    if cost is not None:
        attrs[COST] = round(cost, 10)
    return attrs


def _first(obj: Any, *names: str) -> Any:
    for name in names:
        value = getattr(obj, name, None)
        if value is not None:
            return value
    return None


def _int(obj: Any, *names: str) -> int:
    for name in names:
        value = getattr(obj, name, None)
        if isinstance(value, int):
            return value
    return 0


def response_attrs(operation: str, response: Any) -> Attrs:
    model = getattr(response, "model", None)
    attrs: Attrs = {}
    if isinstance(model, str):
        attrs["gen_ai.response.model"] = model
    response_id = getattr(response, "id", None)
    if isinstance(response_id, str):
        attrs["gen_ai.response.id"] = response_id
    reasons = finish_reasons(operation, response)
    if reasons:
        attrs["gen_ai.response.finish_reasons"] = reasons
    if operation == "embeddings":
        attrs.update(_embedding_attrs(response))
    usage = getattr(response, "usage", None)
    attrs.update(usage_attrs(usage, model if isinstance(model, str) else None))
    return attrs


def finish_reasons(operation: str, response: Any) -> list[str]:
    if operation == "chat":
        choices = getattr(response, "choices", None) or ()
        return [c.finish_reason for c in choices if c.finish_reason]
    if operation == "responses":
        incomplete = getattr(response, "incomplete_details", None)
        reason = getattr(incomplete, "reason", None) or getattr(response, "status", None)
        return [reason] if isinstance(reason, str) else []
    return []


def _embedding_attrs(response: Any) -> Attrs:
    data = getattr(response, "data", None) or []
    attrs: Attrs = {"nbflow.embeddings.count": len(data)}
    vector = getattr(data[0], "embedding", None) if data else None
    if isinstance(vector, list):
        attrs["gen_ai.embeddings.dimension.count"] = len(vector)
    return attrs


def output_preview(operation: str, response: Any, *, record_content: bool) -> Any:
    if operation == "embeddings":
        return {"vectors": len(getattr(response, "data", None) or [])}
    if not record_content:
        return REDACTED
    if operation == "responses":
        return preview(_response_output(response))
    choices = [_choice_output(c.message) for c in getattr(response, "choices", None) or ()]
    return preview(choices[0] if len(choices) == 1 else choices)


def _choice_output(message: Any) -> Any:
    calls = [_tool_call(t) for t in getattr(message, "tool_calls", None) or ()]
    refusal = getattr(message, "refusal", None)
    if not calls and not refusal:
        return message.content
    shown: dict[str, Any] = {"content": message.content}
    if calls:
        shown["tool_calls"] = calls
    if refusal:
        shown["refusal"] = refusal
    return shown


def _tool_call(call: Any) -> Any:
    function = getattr(call, "function", None)
    if function is None:
        return getattr(call, "type", "tool")
    return {"name": function.name, "arguments": function.arguments}


def _response_output(response: Any) -> Any:
    calls = [
        {"name": item.name, "arguments": item.arguments}
        for item in getattr(response, "output", None) or ()
        if getattr(item, "type", None) == "function_call"
    ]
    text = getattr(response, "output_text", "")
    return {"content": text, "tool_calls": calls} if calls else text
