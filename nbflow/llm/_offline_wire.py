"""What the offline model sends: OpenAI-shaped JSON objects and SSE chunks for a completion.

Shapes follow the upstream API closely enough for the official SDK to parse every
field it reads: chat completions (whole, or streamed one token per chunk with an
optional usage chunk last), Responses API objects in their successive states,
and the stream events between them. Tool calls stream as upstream does: a
first delta naming the call, then its arguments a token at a time.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

from nbflow.llm._offline_text import Completion, ToolCall, pieces_of

Json = dict[str, Any]


def chat_usage(c: Completion) -> Json:
    return {
        "prompt_tokens": c.prompt_tokens,
        "completion_tokens": c.completion_tokens,
        "total_tokens": c.prompt_tokens + c.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def chat_head(c: Completion) -> Json:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "created": int(time.time()),
        "model": c.model,
        "system_fingerprint": "fp_nbflow_offline",
        "service_tier": "default",
    }


def chat_tool_call(call: ToolCall) -> Json:
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }


def chat_object(c: Completion) -> Json:
    message: Json = {"role": "assistant", "content": c.text, "refusal": None, "annotations": []}
    if c.tool_calls:
        message["content"] = None
        message["tool_calls"] = [chat_tool_call(call) for call in c.tool_calls]
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": c.finish_reason}
    return {
        **chat_head(c),
        "object": "chat.completion",
        "choices": [choice],
        "usage": chat_usage(c),
    }


def chat_chunks(c: Completion, *, include_usage: bool) -> Iterator[Json]:
    head = {**chat_head(c), "object": "chat.completion.chunk"}
    # With include_usage every chunk carries "usage": null until the last, as upstream does.
    tail: Json = {"usage": None} if include_usage else {}

    def chunk(delta: Json, finish_reason: str | None) -> Json:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {**head, "choices": [choice], **tail}

    opening = "" if not c.tool_calls else None
    yield chunk({"role": "assistant", "content": opening, "refusal": None}, None)
    for piece in c.pieces:
        yield chunk({"content": piece}, None)
    for index, call in enumerate(c.tool_calls):
        opened = {**chat_tool_call(call), "index": index}
        opened["function"] = {"name": call.name, "arguments": ""}
        yield chunk({"tool_calls": [opened]}, None)
        for piece in pieces_of(call.arguments):
            yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}, None)
    yield chunk({}, c.finish_reason)
    if include_usage:
        yield {**head, "choices": [], "usage": chat_usage(c)}


def response_usage(c: Completion) -> Json:
    return {
        "input_tokens": c.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": c.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": c.prompt_tokens + c.completion_tokens,
    }


def output_message(msg_id: str, text: str, status: str) -> Json:
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    content = [part] if status != "in_progress" else []
    return {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": content,
    }


def function_call_item(item_id: str, call: ToolCall, status: str) -> Json:
    done = status != "in_progress"
    return {
        "id": item_id,
        "type": "function_call",
        "call_id": call.id,
        "name": call.name,
        "arguments": call.arguments if done else "",
        "status": status,
    }


class ResponseBuilder:
    """Builds one Responses API object in its successive states (in progress, then final)."""

    def __init__(self, c: Completion, body: Json) -> None:
        self.c = c
        self.body = body
        self.id = f"resp_{uuid.uuid4().hex}"
        self.msg_id = f"msg_{uuid.uuid4().hex}"
        self.call_ids = [f"fc_{uuid.uuid4().hex}" for _ in c.tool_calls]
        self.created_at = int(time.time())
        self.final_status = "incomplete" if c.truncated else "completed"

    def message(self, status: str) -> Json:
        return output_message(self.msg_id, self.c.text, status)

    def items(self, status: str) -> list[Json]:
        if not self.c.tool_calls:
            return [self.message(status)]
        calls = zip(self.call_ids, self.c.tool_calls, strict=True)
        return [function_call_item(item_id, call, status) for item_id, call in calls]

    def response(self, *, final: bool) -> Json:
        status = self.final_status if final else "in_progress"
        incomplete = {"reason": "max_output_tokens"} if final and self.c.truncated else None
        text = self.body.get("text")
        fmt = text.get("format") if isinstance(text, dict) else None
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "completed_at": int(time.time()) if final else None,
            "status": status,
            "model": self.c.model,
            "output": self.items(self.final_status) if final else [],
            "usage": response_usage(self.c) if final else None,
            "incomplete_details": incomplete,
            "error": None,
            "instructions": self.body.get("instructions"),
            "max_output_tokens": self.body.get("max_output_tokens"),
            "metadata": self.body.get("metadata") or {},
            "parallel_tool_calls": self.body.get("parallel_tool_calls") is not False,
            "temperature": self.body.get("temperature", 1.0),
            "top_p": self.body.get("top_p", 1.0),
            "tool_choice": self.body.get("tool_choice") or "auto",
            "tools": self.body.get("tools") or [],
            "text": {"format": fmt or {"type": "text"}},
        }

    def events(self) -> Iterator[Json]:
        yield {"type": "response.created", "response": self.response(final=False)}
        yield {"type": "response.in_progress", "response": self.response(final=False)}
        if self.c.tool_calls:
            for index, (item_id, call) in enumerate(
                zip(self.call_ids, self.c.tool_calls, strict=True)
            ):
                yield from self._call_events(index, item_id, call)
        else:
            yield from self._text_events()
        yield {"type": f"response.{self.final_status}", "response": self.response(final=True)}

    def _text_events(self) -> Iterator[Json]:
        at = {"item_id": self.msg_id, "output_index": 0, "content_index": 0}
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        item = self.message("in_progress")
        yield {"type": "response.output_item.added", "output_index": 0, "item": item}
        yield {"type": "response.content_part.added", **at, "part": part}
        for piece in self.c.pieces:
            yield {"type": "response.output_text.delta", **at, "delta": piece, "logprobs": []}
        yield {"type": "response.output_text.done", **at, "text": self.c.text, "logprobs": []}
        yield {"type": "response.content_part.done", **at, "part": {**part, "text": self.c.text}}
        item = self.message(self.final_status)
        yield {"type": "response.output_item.done", "output_index": 0, "item": item}

    def _call_events(self, index: int, item_id: str, call: ToolCall) -> Iterator[Json]:
        at = {"item_id": item_id, "output_index": index}
        item = function_call_item(item_id, call, "in_progress")
        yield {"type": "response.output_item.added", "output_index": index, "item": item}
        for piece in pieces_of(call.arguments):
            yield {"type": "response.function_call_arguments.delta", **at, "delta": piece}
        done = {"type": "response.function_call_arguments.done", **at}
        yield {**done, "name": call.name, "arguments": call.arguments}
        item = function_call_item(item_id, call, "completed")
        yield {"type": "response.output_item.done", "output_index": index, "item": item}


def sse(payload: Json, *, named: bool) -> bytes:
    data = json.dumps(payload, separators=(",", ":"))
    return (f"event: {payload['type']}\n" if named else "").encode() + f"data: {data}\n\n".encode()
