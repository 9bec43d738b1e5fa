"""Tool calls and structured replies of the offline model: what it answers, not how it is sent.

Which tools it calls is a pure function of the request, so tests and notebooks
can rely on it:

- ``tool_choice="auto"`` (the default): every tool the last user message
  mentions by name (a word of the name, ``weather`` for ``get_weather``), each
  called once, its arguments drawn from the words after that mention; with
  none mentioned, or once tool results follow the last user message, it
  answers in text, citing each result.
- ``"required"``: the tools mentioned, else the first one; a named tool: that one.
- ``"none"``: never a call. ``parallel_tool_calls=False`` keeps the first call only.

Arguments are an instance of the tool's parameter schema whose strings are words
and whose numbers are numbers of the user's message (``_offline_schema``).
JSON mode answers ``{"answer": ...}``; a ``json_schema`` format answers an
instance of the schema whose strings are sentences. Tool calls are never cut by
``max_tokens``; text and JSON are, as upstream.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nbflow.errors import ConfigError
from nbflow.llm._offline_schema import Filler, numbers_in
from nbflow.llm._offline_text import (
    Completion,
    Picker,
    Sentences,
    ToolCall,
    completion_of,
    content_words,
    last_user_text,
    prompt_tokens,
    reply_text,
)

Json = dict[str, Any]
Turns = list[tuple[str, str]]

# Words of a tool's name too common to say the user asked for it.
_GENERIC = frozenset({
    "get", "set", "fetch", "find", "list", "make", "run", "call", "the", "and", "for", "from",
    "tool", "lookup", "look", "query", "search", "compute", "calculate", "create", "read",
})  # fmt: skip
_MAX_CITED_CHARS = 200


@dataclass(frozen=True)
class ToolSpec:
    name: str
    parameters: Json


@dataclass(frozen=True)
class ReplyOptions:
    """What a request asks of the reply's form, whichever API it came through."""

    tools: tuple[ToolSpec, ...] = ()
    tool_choice: str = "auto"  # "auto" | "none" | "required" | a tool's name
    parallel_tool_calls: bool = True
    output_format: str = "text"  # "text" | "json_object" | "json_schema"
    schema: Json | None = None
    tool_text: str = ""  # the tool definitions, counted as prompt tokens as upstream does

    @classmethod
    def for_chat(cls, body: Json) -> ReplyOptions:
        tools = _listed(body.get("tools"), "tools")
        specs = [t.get("function") for t in tools if t.get("type") == "function"]
        fmt = body.get("response_format")
        schema_holder = fmt.get("json_schema") if isinstance(fmt, Mapping) else None
        return cls._build(
            body, specs, _choice(body.get("tool_choice"), nested=True), fmt, schema_holder
        )

    @classmethod
    def for_responses(cls, body: Json) -> ReplyOptions:
        tools = _listed(body.get("tools"), "tools")
        specs = [t for t in tools if t.get("type") == "function"]
        text = body.get("text")
        fmt = text.get("format") if isinstance(text, Mapping) else None
        return cls._build(body, specs, _choice(body.get("tool_choice"), nested=False), fmt, fmt)

    @classmethod
    def _build(
        cls,
        body: Json,
        specs: list[Any],
        choice: str,
        fmt: Any,
        schema_holder: Any,
    ) -> ReplyOptions:
        tools = tuple(_spec(s) for s in specs)
        names = {t.name for t in tools}
        if choice not in ("auto", "none", "required") and choice not in names:
            raise ConfigError(f"tool_choice names {choice!r}, which is not among the tools.")
        output = str(fmt.get("type", "text")) if isinstance(fmt, Mapping) else "text"
        schema = schema_holder.get("schema") if isinstance(schema_holder, Mapping) else None
        if output == "json_schema" and not isinstance(schema, Mapping):
            raise ConfigError("a json_schema format needs a 'schema' object.")
        return cls(
            tools=tools,
            tool_choice=choice,
            parallel_tool_calls=body.get("parallel_tool_calls") is not False,
            output_format=output,
            schema=dict(schema) if isinstance(schema, Mapping) else None,
            tool_text=json.dumps(body["tools"]) if body.get("tools") else "",
        )


def _listed(value: Any, name: str) -> list[Json]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise ConfigError(f"'{name}' must be a list of objects.")
    return value


def _choice(value: Any, *, nested: bool) -> str:
    if value is None:
        return "auto"
    if isinstance(value, str):
        if value not in ("auto", "none", "required"):
            raise ConfigError(f"tool_choice {value!r} is not one of auto, none, required.")
        return value
    if isinstance(value, Mapping) and value.get("type") == "function":
        holder = value.get("function") if nested else value
        if isinstance(holder, Mapping) and isinstance(holder.get("name"), str):
            return str(holder["name"])
    return "auto"  # allowed_tools, built-in tools: left to the model, as "auto" is


def _spec(raw: Any) -> ToolSpec:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str) or not raw["name"]:
        raise ConfigError("each function tool needs a 'name'.")
    parameters = raw.get("parameters")
    if parameters is not None and not isinstance(parameters, Mapping):
        raise ConfigError(f"tool {raw['name']!r}: 'parameters' must be a JSON schema object.")
    return ToolSpec(raw["name"], dict(parameters or {"type": "object", "properties": {}}))


# --- the reply ------------------------------------------------------------------------
def answer(
    model: str,
    turns: Turns,
    *,
    max_tokens: int | None,
    options: ReplyOptions,
    results: Sequence[tuple[str, str]] = (),
) -> Completion:
    """The completion for a request; ``results`` are (tool, output) after the last user turn."""
    prompt = prompt_tokens(turns, extra=options.tool_text)
    calls = tool_calls(model, turns, options, answered=bool(results))
    if calls:
        return completion_of(model, "", prompt, max_tokens=None, tool_calls=calls)
    text = _reply_text(model, turns, options, results)
    return completion_of(model, text, prompt, max_tokens=max_tokens)


def tool_calls(
    model: str, turns: Turns, options: ReplyOptions, *, answered: bool
) -> tuple[ToolCall, ...]:
    choice, tools = options.tool_choice, options.tools
    if not tools or choice == "none" or (choice == "auto" and answered):
        return ()
    question = last_user_text(turns)
    if choice not in ("auto", "required"):
        chosen = [t for t in tools if t.name == choice]
    else:
        chosen = [t for t in tools if mentions(question, t.name)]
        if not chosen and choice == "required":
            chosen = [tools[0]]
    if not options.parallel_tool_calls:
        chosen = chosen[:1]
    return tuple(_call(model, turns, spec, i) for i, spec in enumerate(chosen))


def name_words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    words = [w.lower() for w in re.split(r"[\W_]+", spaced) if len(w) >= 3]
    return [w for w in words if w not in _GENERIC] or words


def mentions(text: str, name: str) -> bool:
    return mention_at(text, name) is not None


def mention_at(text: str, name: str) -> int | None:
    """Where ``text`` first names the tool ``name``; None when it does not."""
    wanted = {_stem(w) for w in name_words(name)}
    for match in re.finditer(r"\w+", text):
        if _stem(match.group().lower()) in wanted:
            return match.start()
    return None


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") else word


def _mentioned_in(text: str) -> Callable[[str], bool]:
    words = set(re.findall(r"\w+", text.lower()))
    lowered = text.lower()

    def mentioned(value: str) -> bool:
        value = value.lower()
        return value in words or (len(value) > 3 and not value.isalnum() and value in lowered)

    return mentioned


def _call(model: str, turns: Turns, spec: ToolSpec, index: int) -> ToolCall:
    seed = json.dumps([model, turns, spec.name, index])
    question = last_user_text(turns)
    # What follows the tool's mention is about it: "weather in Paris, and add 2 and 3".
    at = mention_at(question, spec.name) or 0
    focus, before = question[at:], question[:at]
    taken = set(name_words(spec.name))
    words = [w for w in content_words(focus) + content_words(before) if w.lower() not in taken]
    picker = Picker(seed)
    strings = itertools.cycle(words) if words else None
    sentences = Sentences(picker, turns)
    filler = Filler(
        spec.parameters,
        picker=picker,
        strings=(lambda: next(strings)) if strings is not None else lambda: sentences.topic[0],
        numbers=numbers_in(focus) + numbers_in(before),
        mentioned=_mentioned_in(question),
    )
    arguments = json.dumps(filler.instance(), separators=(",", ":"), ensure_ascii=False)
    call_id = "call_" + hashlib.sha256(seed.encode()).hexdigest()[:24]
    return ToolCall(call_id, spec.name, arguments)


def _reply_text(
    model: str, turns: Turns, options: ReplyOptions, results: Sequence[tuple[str, str]]
) -> str:
    if options.output_format == "json_object":
        if not any("json" in text.lower() for _, text in turns):
            raise ConfigError(
                "the messages must contain the word 'json' in some form "
                "to use a response format of type 'json_object'."
            )
        return json.dumps({"answer": reply_text(model, turns)}, ensure_ascii=False)
    if options.output_format == "json_schema" and options.schema is not None:
        return structured(model, turns, options.schema)
    cited = [f"{name} returned {_cited(output)}." for name, output in results]
    return " ".join([*cited, reply_text(model, turns)])


def structured(model: str, turns: Turns, schema: Json) -> str:
    """An instance of ``schema`` as compact JSON, its strings sentences about the question."""
    picker = Picker(json.dumps([model, turns, "json_schema"]))
    sentences = Sentences(picker, turns)
    question = last_user_text(turns)
    filler = Filler(
        schema,
        picker=picker,
        strings=sentences.next,
        numbers=numbers_in(question),
        mentioned=_mentioned_in(question),
    )
    return json.dumps(filler.instance(), separators=(",", ":"), ensure_ascii=False)


def _cited(output: str) -> str:
    flat = " ".join(output.split())
    return flat if len(flat) <= _MAX_CITED_CHARS else flat[:_MAX_CITED_CHARS] + "…"
