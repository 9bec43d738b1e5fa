"""Tools: components a model can call, described by a JSON schema made from their type hints.

    @nf.tool
    def get_weather(city: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> dict:
        '''The current weather in a city.'''

    reply = client.chat.completions.create(
        model=..., messages=messages, tools=nf.tool_definitions([get_weather])
    )
    messages += nf.call_tools(reply, [get_weather])   # [] when the model called none

A tool is a component (retries, cache, time-out, durable steps) whose span has
kind ``tool`` and the OpenTelemetry GenAI ``execute_tool`` attributes, including
the model's call id and its arguments as sent. Its arguments are validated
against its parameters (pydantic), however it is called; arguments a model sent
that are not JSON, or not valid, fail the span with ``ToolArgumentsError``.
``call_tools`` runs each call of a chat completion or a Responses API response and
returns what to send back: by default a failed call's error goes back to the model
as the tool's output (``on_error="raise"`` raises it instead).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import json
import re
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from . import _context as ctx
from ._component import CacheOption, Component, RetryOption
from ._policies import Seconds
from .errors import ConfigError, RunCancelled, ToolArgumentsError

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionFunctionToolParam
    from openai.types.responses import FunctionToolParam

Api = Literal["chat", "responses"]
OnError = Literal["return", "raise"]
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what the OpenAI API accepts as a tool name
_NAMED_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


@dataclass(frozen=True)
class ToolCall:
    """One call a model asked for: its id, the tool's name and the arguments as sent."""

    id: str
    name: str
    arguments: str


_current_call: contextvars.ContextVar[ToolCall | None] = contextvars.ContextVar(
    "nbflow_tool_call", default=None
)


class ToolSpec:
    """What a tool's span needs to know of it, shared by the tool and its ``with_*`` copies."""

    def __init__(
        self, fn: Callable[..., Any], name: str, description: str, *, keep_raw: bool
    ) -> None:
        self.fn = fn
        self.name = name
        self.description = description
        self.keep_raw = keep_raw  # False when redact hides arguments the raw text would show
        self._model: Any = None  # the pydantic model of the parameters, made on first use

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_model": None}  # rebuilt from the signature where needed

    def model(self) -> Any:
        if self._model is None:
            self._model = _arguments_model(self.fn, self.name)
        return self._model

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        from pydantic import ValidationError

        model = self.model()
        try:
            parsed = model.model_validate(arguments)
        except ValidationError as error:
            raise ToolArgumentsError(
                f"tool {self.name!r} got arguments its parameters do not allow: {_errors(error)}",
                tool=self.name,
                raw=_json_text(arguments),
            ) from None
        return {field: getattr(parsed, field) for field in model.model_fields}

    def span_attrs(self, call: ToolCall | None) -> dict[str, Any]:
        attrs = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": self.name,
            "gen_ai.tool.type": "function",
        }
        if self.description:
            attrs["gen_ai.tool.description"] = self.description
        if call is not None:
            attrs["gen_ai.tool.call.id"] = call.id
            if self.keep_raw:
                attrs["gen_ai.tool.call.arguments"] = call.arguments
        return attrs


class Tool(Component):
    """A component that is also a tool definition; made by ``@nf.tool``."""

    kind = "tool"
    spec: ToolSpec

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        retry: RetryOption = None,
        cache: CacheOption = None,
        timeout_s: Seconds | None = None,
        redact: Iterable[str] = (),
    ) -> None:
        if isinstance(fn, Component):
            fn = fn.fn
        if not callable(fn):
            raise TypeError(f"nbflow.tool decorates a function, got {fn!r}")
        tool_name = str(name or getattr(fn, "__name__", ""))
        if not _NAME.match(tool_name):
            raise ConfigError(
                f"tool name {tool_name!r}: use 1 to 64 letters, digits, '_' or '-' (name=...)"
            )
        _check_parameters(fn, tool_name)
        redacted = (redact,) if isinstance(redact, str) else tuple(redact)
        spec = ToolSpec(
            fn,
            tool_name,
            _summary(fn) if description is None else description,
            keep_raw=not redacted,
        )
        super().__init__(
            _traced(spec),
            name=tool_name,
            retry=retry,
            cache=cache,
            timeout_s=timeout_s,
            redact=redacted,
        )
        self.spec = spec
        self.code_digest = _digest_of(fn)  # cache keys follow the user's code, not the wrapper's

    @property
    def description(self) -> str:
        """What the model is told the tool does."""
        return self.spec.description

    @property
    def parameters(self) -> dict[str, Any]:
        """The JSON schema of the tool's arguments."""
        schema: dict[str, Any] = self.spec.model().model_json_schema()
        schema.pop("title", None)
        return schema

    def definition(self, *, api: Api = "chat") -> dict[str, Any]:
        """The tool as the OpenAI API takes it in ``tools=[...]``: chat or Responses API."""
        function: dict[str, Any] = {"name": self.name, "parameters": self.parameters}
        if self.description:
            function["description"] = self.description
        if api == "chat":
            return {"type": "function", "function": function}
        if api == "responses":
            return {"type": "function", **function}
        raise ConfigError(f"api= is 'chat' or 'responses', got {api!r}")


def _check_parameters(fn: Callable[..., Any], name: str) -> None:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        raise ConfigError(f"tool {name!r}: its signature cannot be read") from None
    for p in params:
        if p.kind not in _NAMED_KINDS:
            raise ConfigError(
                f"tool {name!r}: parameter {p.name!r} must be passable by name "
                "(no *args, **kwargs or positional-only parameters)"
            )


def _summary(fn: Callable[..., Any]) -> str:
    doc = inspect.getdoc(fn) or ""
    return doc.split("\n\n", 1)[0].replace("\n", " ").strip()


def _digest_of(fn: Callable[..., Any]) -> str:
    from ._cache import code_digest

    return code_digest(fn)


def _arguments_model(fn: Callable[..., Any], name: str) -> Any:
    from pydantic import ConfigDict, create_model

    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as error:  # a hint naming what its module does not define
        raise ConfigError(f"tool {name!r}: its type hints cannot be resolved ({error})") from None
    fields: dict[str, Any] = {}
    for p in inspect.signature(fn).parameters.values():
        hint = hints.get(p.name, Any)
        default = ... if p.default is inspect.Parameter.empty else p.default
        fields[p.name] = (hint, default)
    try:
        model = create_model(f"{name}_arguments", __config__=ConfigDict(extra="forbid"), **fields)
        model.model_json_schema()
    except Exception as error:  # e.g. a parameter type pydantic cannot describe
        raise ConfigError(f"tool {name!r}: no JSON schema for its parameters ({error})") from None
    return model


def _errors(error: Any) -> str:
    parts = [f"{'.'.join(map(str, e['loc'])) or '(arguments)'}: {e['msg']}" for e in error.errors()]
    return "; ".join(parts)


def _json_text(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(value)


# --- the function a tool's component runs ------------------------------------------------------
def _traced(spec: ToolSpec) -> Callable[..., Any]:
    """The user's function behind the span's attributes and the argument checks, same shape."""
    fn, signature = spec.fn, inspect.signature(spec.fn)
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            return await fn(**_entered(spec, signature.bind_partial(*args, **kwargs).arguments))

        return run_async

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        return fn(**_entered(spec, signature.bind_partial(*args, **kwargs).arguments))

    return run


def _entered(spec: ToolSpec, arguments: dict[str, Any]) -> dict[str, Any]:
    """Describe the open span as a tool execution; the arguments, checked."""
    call = _current_call.get()
    if call is not None:
        _current_call.set(None)  # a tool this tool calls in turn answers no call of the model
        if call.name != spec.name:
            call = None
    frame = ctx.current()
    if frame is not None:
        frame.attrs.update(spec.span_attrs(call))
    if call is not None and not arguments:
        _decoded(spec.name, call.arguments)  # raw text that is not a JSON object fails here
    return spec.validate(arguments)


def _decoded(name: str, raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw) if raw.strip() else {}
    except ValueError as error:
        raise ToolArgumentsError(
            f"tool {name!r} got arguments that are not JSON ({error}): {raw[:500]!r}",
            tool=name,
            raw=raw,
        ) from None
    if not isinstance(value, dict):
        raise ToolArgumentsError(
            f"tool {name!r} got arguments that are not a JSON object: {raw[:500]!r}",
            tool=name,
            raw=raw,
        )
    return value


# --- running a reply's tool calls ---------------------------------------------------------------
@typing.overload
def tool_definitions(
    tools: Iterable[Tool], *, api: Literal["chat"] = "chat"
) -> list[ChatCompletionFunctionToolParam]: ...


@typing.overload
def tool_definitions(
    tools: Iterable[Tool], *, api: Literal["responses"]
) -> list[FunctionToolParam]: ...


def tool_definitions(tools: Iterable[Tool], *, api: Api = "chat") -> list[Any]:
    """``tools=`` for a chat completion (``api="chat"``) or a Responses API request,
    typed as the OpenAI SDK's ``tools=`` takes them."""
    return [t.definition(api=api) for t in tools]


def tool_calls_of(reply: Any) -> list[ToolCall]:
    """The function calls a chat completion, its message, or a Responses API response asks for."""
    output = getattr(reply, "output", None)
    if isinstance(output, list):
        return [
            ToolCall(item.call_id, item.name, item.arguments or "")
            for item in output
            if getattr(item, "type", None) == "function_call"
        ]
    choices = getattr(reply, "choices", None)
    message = choices[0].message if choices else reply
    return [
        ToolCall(call.id, call.function.name, call.function.arguments or "")
        for call in getattr(message, "tool_calls", None) or ()
        if getattr(call, "type", "function") == "function"
    ]


def call_tools(
    reply: Any, tools: Iterable[Tool], *, on_error: OnError = "return"
) -> list[dict[str, Any]]:
    """Run the tool calls of ``reply`` in order, each a ``tool`` span; the messages to send back.

    For a chat completion: the assistant message that made the calls, then one
    ``tool`` message per call. For a Responses API response: the ``function_call``
    items, then one ``function_call_output`` per call. ``[]`` when there are no calls.
    """
    calls = tool_calls_of(reply)
    if not calls:
        return []
    by_name = _by_name(tools, on_error)
    outputs = [_run(by_name.get(call.name), call, on_error) for call in calls]
    return _feedback(reply, calls, outputs)


async def call_tools_async(
    reply: Any, tools: Iterable[Tool], *, on_error: OnError = "return"
) -> list[dict[str, Any]]:
    """``call_tools`` for async code: the calls run concurrently, sync tools on threads."""
    calls = tool_calls_of(reply)
    if not calls:
        return []
    by_name = _by_name(tools, on_error)
    outputs = await asyncio.gather(
        *(_run_async(by_name.get(call.name), call, on_error) for call in calls)
    )
    return _feedback(reply, calls, list(outputs))


def _by_name(tools: Iterable[Tool], on_error: str) -> dict[str, Tool]:
    if on_error not in ("return", "raise"):
        raise ConfigError(f"on_error= is 'return' or 'raise', got {on_error!r}")
    found: dict[str, Tool] = {}
    for t in tools:
        if not isinstance(t, Tool):
            raise ConfigError(f"call_tools takes tools made with @nf.tool, got {t!r}")
        found[t.name] = t
    return found


def _run(tool: Tool | None, call: ToolCall, on_error: str) -> str:
    if tool is not None and tool.is_async:
        raise ConfigError(f"tool {tool.name!r} is async: use `await nf.call_tools_async(...)`")
    token = _current_call.set(call)
    try:
        return as_text(_invoke(tool, call))
    except (RunCancelled, KeyboardInterrupt):
        raise
    except Exception as error:
        if on_error == "raise":
            raise
        return _error_text(error)
    finally:
        _current_call.reset(token)


async def _run_async(tool: Tool | None, call: ToolCall, on_error: str) -> str:
    # Each call runs in a task of its own, so the call it answers is its own too.
    token = _current_call.set(call)
    try:
        if tool is not None and tool.is_async:
            value = await _invoke(tool, call)
        else:
            value = await asyncio.to_thread(_invoke, tool, call)
        return as_text(value)
    except (RunCancelled, KeyboardInterrupt):
        raise
    except Exception as error:
        if on_error == "raise":
            raise
        return _error_text(error)
    finally:
        _current_call.reset(token)


def _invoke(tool: Tool | None, call: ToolCall) -> Any:
    if tool is None:
        raise ToolArgumentsError(
            f"the model called {call.name!r}, which is not among the tools",
            tool=call.name,
            raw=call.arguments,
        )
    try:
        arguments = _decoded(tool.name, call.arguments)
    except ToolArgumentsError:
        return tool()  # the span opens, then fails on the raw text, which it keeps
    return tool(**arguments)


def as_text(value: Any) -> str:
    """A tool's result as the text a model reads: strings as they are, the rest as JSON."""
    if isinstance(value, str):
        return value
    from pydantic_core import to_json

    return to_json(value, fallback=repr).decode()


def _error_text(error: BaseException) -> str:
    return f"error: {type(error).__name__}: {error}"


def _feedback(reply: Any, calls: Sequence[ToolCall], outputs: list[str]) -> list[dict[str, Any]]:
    if isinstance(getattr(reply, "output", None), list):
        made = [
            {"type": "function_call", "call_id": c.id, "name": c.name, "arguments": c.arguments}
            for c in calls
        ]
        answers = [
            {"type": "function_call_output", "call_id": c.id, "output": out}
            for c, out in zip(calls, outputs, strict=True)
        ]
        return [*made, *answers]
    choices = getattr(reply, "choices", None)
    message = choices[0].message if choices else reply
    assistant = {
        "role": "assistant",
        "content": getattr(message, "content", None),
        "tool_calls": [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": c.arguments},
            }
            for c in calls
        ],
    }
    answers = [
        {"role": "tool", "tool_call_id": c.id, "content": out}
        for c, out in zip(calls, outputs, strict=True)
    ]
    return [assistant, *answers]


@typing.overload
def tool(
    fn: Callable[..., Any],
    *,
    name: str | None = ...,
    description: str | None = ...,
    retry: RetryOption = ...,
    cache: CacheOption = ...,
    timeout_s: Seconds | None = ...,
    redact: Iterable[str] = ...,
) -> Tool: ...


@typing.overload
def tool(
    fn: None = ...,
    *,
    name: str | None = ...,
    description: str | None = ...,
    retry: RetryOption = ...,
    cache: CacheOption = ...,
    timeout_s: Seconds | None = ...,
    redact: Iterable[str] = ...,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    retry: RetryOption = None,
    cache: CacheOption = None,
    timeout_s: Seconds | None = None,
    redact: Iterable[str] = (),
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make ``fn`` a tool: ``@nf.tool`` or ``@nf.tool(name=..., description=..., retry=...)``.

    The description defaults to the docstring's first paragraph.
    """
    options: dict[str, Any] = {
        "name": name,
        "description": description,
        "retry": retry,
        "cache": cache,
        "timeout_s": timeout_s,
        "redact": redact,
    }
    if fn is None:
        return lambda f: Tool(f, **options)
    return Tool(fn, **options)
