"""A folded run as OpenTelemetry spans: one trace per run, ids derived from the run's.

Trace and span ids are digests of the run id and nbflow's span id, so exporting a
run again sends the same ids (a backend that keys spans by id keeps one copy).
Every span carries nbflow's own attributes and, where they apply, the
OpenTelemetry GenAI semantic conventions (already recorded on llm and tool spans)
plus the OpenInference attributes that Phoenix and other LLM backends read
(``openinference.span.kind``, ``llm.model_name``, ``llm.token_count.*``,
``input.value``, ``output.value``, messages and tool calls).

The spans are made by the SDK's own tracer, with the recorded start and end
times and an id generator that hands out the derived ids, and collected rather
than exported one at a time.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import SpanKind, Status, StatusCode

from nbflow._fold import RunState, SpanState
from nbflow._spanstate import start_order
from nbflow._version import __version__

Attrs = dict[str, Any]

# OpenInference span kinds by nbflow span kind (and llm operation).
SPAN_KINDS = {"workflow": "CHAIN", "component": "CHAIN", "llm": "LLM", "tool": "TOOL"}
# Request arguments that are the conversation or the tools, not invocation parameters.
_CONVERSATION = frozenset({"messages", "input", "instructions", "tools", "model"})
MAX_MESSAGES = 50  # flattened per span, past which a long conversation is cut (oldest kept)
_SPAN_ATTRIBUTES = 1_024  # the SDK keeps 128 by default; flattened conversations need more
_NS = 1_000_000_000


def trace_id_of(run_id: str) -> int:
    return _nonzero(hashlib.blake2b(f"nbflow-run|{run_id}".encode(), digest_size=16).digest())


def span_id_of(run_id: str, span_id: str) -> int:
    return _nonzero(hashlib.blake2b(f"{run_id}|{span_id}".encode(), digest_size=8).digest())


def _nonzero(digest: bytes) -> int:
    return int.from_bytes(digest, "big") or 1  # 0 is the invalid id


class _Ids(IdGenerator):
    """Hands out the ids chosen for the span being started."""

    def __init__(self) -> None:
        self.trace_id = 0
        self.span_id = 0

    def generate_span_id(self) -> int:
        return self.span_id

    def generate_trace_id(self) -> int:
        return self.trace_id


class _Collect(SpanProcessor):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


class SpanMaker:
    """Turns folded runs into SDK spans under one resource; not shared between threads."""

    def __init__(self, resource: Any) -> None:
        self._ids = _Ids()
        self._collected = _Collect()
        self._provider = TracerProvider(
            resource=resource,
            id_generator=self._ids,
            shutdown_on_exit=False,
            span_limits=SpanLimits(max_span_attributes=_SPAN_ATTRIBUTES),
        )
        self._provider.add_span_processor(self._collected)
        self._tracer = self._provider.get_tracer("nbflow", __version__)

    def spans(self, state: RunState, *, now_s: float | None = None) -> list[ReadableSpan]:
        now_s = time.time() if now_s is None else now_s
        self._ids.trace_id = trace_id_of(state.run_id)
        self._collected.spans = []
        if not state.spans:
            self._emit(_run_span(state), None, state, now_s)
        for span, parent in _parents_first(state):
            self._emit(span, parent, state, now_s)
        return self._collected.spans

    def close(self) -> None:
        self._provider.shutdown()

    def _emit(self, span: SpanState, parent: SpanState | None, run: RunState, now_s: float) -> None:
        self._ids.span_id = span_id_of(run.run_id, span.span_id)
        context = None
        if parent is not None:
            parent_context = trace.SpanContext(
                trace_id=self._ids.trace_id,
                span_id=span_id_of(run.run_id, parent.span_id),
                is_remote=False,
                trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
            )
            context = trace.set_span_in_context(trace.NonRecordingSpan(parent_context))
        otel = self._tracer.start_span(
            span.name,
            context=context,
            kind=SpanKind.CLIENT if span.kind == "llm" else SpanKind.INTERNAL,
            attributes=span_attributes(span, run, root=parent is None),
            start_time=_ns(span.start if span.start is not None else span.end),
        )
        for retry in span.retries:
            otel.add_event("nbflow.retry", _scalars(retry), timestamp=_ns(retry.get("ts")))
        end_s = span.end if span.end is not None else max(now_s, span.start or 0.0)
        if span.status == "error":
            otel.add_event("exception", _exception(span), timestamp=_ns(end_s))
            otel.set_status(Status(StatusCode.ERROR, span.error or span.error_type or "error"))
        elif span.status == "ok":
            otel.set_status(Status(StatusCode.OK))
        otel.end(end_time=_ns(end_s))


def _parents_first(state: RunState) -> Iterator[tuple[SpanState, SpanState | None]]:
    """Every span after its parent; a span whose parent is not in the log is a root."""
    children: dict[str | None, list[SpanState]] = {}
    for span in state.spans.values():
        parent_id = span.parent_id if span.parent_id in state.spans else None
        children.setdefault(parent_id, []).append(span)
    roots = sorted(children.get(None, []), key=start_order)
    stack: list[tuple[SpanState, SpanState | None]] = [(s, None) for s in reversed(roots)]
    while stack:
        node, above = stack.pop()
        yield node, above
        below = sorted(children.get(node.span_id, []), key=start_order)
        stack.extend((child, node) for child in reversed(below))


def _run_span(state: RunState) -> SpanState:
    """The one span of a run that ended (or waits) before its workflow's span began."""
    start = state.started_at or state.created_at or time.time()
    status = {"succeeded": "ok", "failed": "error", "cancelled": "cancelled"}.get(
        state.status, "running"
    )
    return SpanState(
        span_id="run",
        parent_id=None,
        name=state.workflow or "run",
        kind="workflow",
        status=status,
        start=start,
        end=state.ended_at,
        error=state.error or (state.reason if status == "error" else None),
        error_type=state.error_type,
        traceback=state.traceback,
    )


# --- attributes ----------------------------------------------------------------------------
def span_attributes(span: SpanState, run: RunState, *, root: bool) -> Attrs:
    attrs: Attrs = {key: _attr(value) for key, value in span.attrs.items() if value is not None}
    attrs.update(
        {
            "nbflow.run_id": run.run_id,
            "nbflow.span_id": span.span_id,
            "nbflow.kind": span.kind,
            "nbflow.status": span.status,
            "nbflow.attempts": span.attempts,
            "nbflow.cached": span.cached,
            "openinference.span.kind": _openinference_kind(span),
        }
    )
    if span.step:
        attrs["nbflow.step"] = span.step
    if span.restarts:
        attrs["nbflow.restarts"] = span.restarts
    if root:
        attrs.update(_run_attributes(run))
    attrs.update(_io("input", span.input))
    output = span.output if span.output is not None else span.attrs.get("nbflow.output.raw")
    attrs.update(_io("output", output))
    if span.kind == "llm":
        attrs.update(llm_attributes(span))
    elif span.kind == "tool":
        attrs.update(_tool_attributes(span))
    return {k: v for k, v in attrs.items() if v is not None}


def _openinference_kind(span: SpanState) -> str:
    if span.kind == "llm" and span.attrs.get("gen_ai.operation.name") == "embeddings":
        return "EMBEDDING"
    return SPAN_KINDS.get(span.kind, "CHAIN")


def _run_attributes(run: RunState) -> Attrs:
    attrs: Attrs = {"nbflow.run.status": run.status}
    if run.workflow:
        attrs["nbflow.workflow"] = run.workflow
    if run.reason:
        attrs["nbflow.run.reason"] = run.reason
    if run.restarts:
        attrs["nbflow.run.restarts"] = run.restarts
    return attrs


def _io(prefix: str, value: Any) -> Attrs:
    if value is None:
        return {}
    if isinstance(value, str):
        return {f"{prefix}.value": value, f"{prefix}.mime_type": "text/plain"}
    return {f"{prefix}.value": _json(value), f"{prefix}.mime_type": "application/json"}


def llm_attributes(span: SpanState) -> Attrs:
    inp, out = span.input_tokens, span.output_tokens
    attrs: Attrs = {
        "llm.model_name": span.model,
        "llm.system": "openai",  # the API the client speaks, whoever serves it
        "llm.provider": span.attrs.get("gen_ai.provider.name"),
        "llm.token_count.prompt": inp,
        "llm.token_count.completion": out,
        "llm.token_count.total": inp + out,
        "llm.token_count.prompt_details.cache_read": span.attrs.get(
            "gen_ai.usage.cache_read.input_tokens"
        ),
        "llm.token_count.completion_details.reasoning": span.attrs.get(
            "gen_ai.usage.reasoning.output_tokens"
        ),
    }
    request = span.input if isinstance(span.input, Mapping) else {}
    parameters = {k: v for k, v in request.items() if k not in _CONVERSATION}
    if parameters:
        attrs["llm.invocation_parameters"] = _json(parameters)
    for i, tool in enumerate(request.get("tools") or ()):
        attrs[f"llm.tools.{i}.tool.json_schema"] = _json(tool)
    attrs.update(_messages("llm.input_messages", _input_messages(request)))
    attrs.update(_messages("llm.output_messages", _output_messages(span.output)))
    return attrs


def _input_messages(request: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    messages: list[Mapping[str, Any]] = []
    if isinstance(request.get("instructions"), str):
        messages.append({"role": "system", "content": request["instructions"]})
    found = request.get("messages", request.get("input"))
    if isinstance(found, str):
        messages.append({"role": "user", "content": found})
    elif isinstance(found, list):
        messages += [m for m in found if isinstance(m, Mapping)]
    return messages[-MAX_MESSAGES:]


def _output_messages(output: Any) -> list[Mapping[str, Any]]:
    if isinstance(output, str):
        return [{"role": "assistant", "content": output}]
    if isinstance(output, Mapping) and ("content" in output or "tool_calls" in output):
        return [{"role": "assistant", **output}]
    return []


def _messages(prefix: str, messages: list[Mapping[str, Any]]) -> Attrs:
    attrs: Attrs = {}
    for i, message in enumerate(messages):
        at = f"{prefix}.{i}.message"
        role = message.get("role") or message.get("type")
        if role:
            attrs[f"{at}.role"] = str(role)
        content = message.get("content", message.get("output"))
        if content is not None:
            attrs[f"{at}.content"] = content if isinstance(content, str) else _json(content)
        if message.get("tool_call_id") or message.get("call_id"):
            attrs[f"{at}.tool_call_id"] = str(message.get("tool_call_id") or message["call_id"])
        for j, call in enumerate(message.get("tool_calls") or ()):
            attrs.update(_tool_call(f"{at}.tool_calls.{j}.tool_call", call))
        if message.get("type") == "function_call":
            attrs.update(_tool_call(f"{at}.tool_calls.0.tool_call", message))
    return attrs


def _tool_call(at: str, call: Any) -> Attrs:
    if not isinstance(call, Mapping):
        return {}
    nested = call.get("function")
    function: Mapping[str, Any] = nested if isinstance(nested, Mapping) else call
    attrs: Attrs = {
        f"{at}.function.name": function.get("name"),
        f"{at}.function.arguments": function.get("arguments"),
    }
    if call.get("id") or call.get("call_id"):
        attrs[f"{at}.id"] = str(call.get("id") or call.get("call_id"))
    return {k: _attr(v) for k, v in attrs.items() if v is not None}


def _tool_attributes(span: SpanState) -> Attrs:
    attrs = span.attrs
    return {
        "tool.name": attrs.get("gen_ai.tool.name", span.name),
        "tool.description": attrs.get("gen_ai.tool.description"),
        "tool_call.id": attrs.get("gen_ai.tool.call.id"),
        "tool_call.function.name": attrs.get("gen_ai.tool.name", span.name),
        "tool_call.function.arguments": attrs.get("gen_ai.tool.call.arguments"),
    }


def _exception(span: SpanState) -> Attrs:
    attrs: Attrs = {
        "exception.type": span.error_type or "Error",
        "exception.message": span.error or "",
    }
    if span.traceback:
        attrs["exception.stacktrace"] = span.traceback
    return attrs


# --- values ------------------------------------------------------------------------------
def _attr(value: Any) -> Any:
    """A value OpenTelemetry takes as an attribute: a scalar or a list of one scalar type."""
    if isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list | tuple):
        kinds = {type(v) for v in value}
        if len(kinds) == 1 and kinds <= {str, bool, int, float}:
            return list(value)
    return _json(value)


def _scalars(values: Mapping[str, Any]) -> Attrs:
    return {k: _attr(v) for k, v in values.items() if v is not None and k != "ts"}


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _ns(seconds: Any) -> int:
    return round(float(seconds or 0) * _NS)
