"""Streams: followed chunk by chunk for the span, recorded whole for replays.

The caller iterates the SDK's own chunk objects. Each is kept on the way past
(and the first token timed); the usage-only chunk that nbflow asked for on the
caller's behalf is not passed on. When the stream ends the span finishes with
what the chunks said (text, finish reasons, usage); a stream cut short
finishes it in error, with the tokens seen so far, and the SDK's exception
reaches the caller unchanged.

What a replay gets back is the stream as the caller saw it, with runs of text
chunks merged into one, so the memo stays small: the same text, in fewer chunks.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

from nbflow.llm._attrs import Attrs, output_preview, response_attrs, usage_attrs

if TYPE_CHECKING:
    from nbflow.llm._call import Call

TEXT_DELTA = "response.output_text.delta"
FINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


class ChatFollower:
    """What a chat completion stream has said so far.

    Chunks are only kept on the way past (and the first token timed); they are
    read once, when the span needs them: one tight loop costs less than the same
    work spread between the SDK's own per-chunk parsing.
    """

    operation = "chat"

    def __init__(self, *, hide_usage: bool) -> None:
        self.hide_usage = hide_usage
        self.kept: list[Any] = []
        self.first_token_at: float | None = None
        self.usage: Any = None
        self._read: _ChatReading | None = None

    def add(self, chunk: Any) -> bool:
        """Note a chunk; False when the caller must not see it."""
        if self.first_token_at is None and any(_is_output(c.delta) for c in chunk.choices):
            self.first_token_at = time.perf_counter()
        if chunk.usage is not None:
            self.usage = chunk.usage
            if self.hide_usage and not chunk.choices:
                return False
        self.kept.append(chunk)
        return True

    @property
    def reading(self) -> _ChatReading:
        if self._read is None or self._read.seen != len(self.kept):
            self._read = _ChatReading(self.kept)
        return self._read

    @property
    def pieces(self) -> int:
        return self.reading.pieces

    def attrs(self) -> Attrs:
        head = self.kept[0] if self.kept else None
        attrs = _head_attrs(head)
        reasons = self.reading.reasons
        if reasons:
            attrs["gen_ai.response.finish_reasons"] = [reasons[i] for i in sorted(reasons)]
        attrs.update(usage_attrs(self.usage, attrs.get("gen_ai.response.model")))
        return attrs

    def output(self) -> Any:
        reading = self.reading
        text = "".join(reading.parts)
        if not reading.tools:
            return text
        calls = [{"name": n, "arguments": a} for n, a in reading.tools.values()]
        return {"content": text, "tool_calls": calls}

    @property
    def has_usage(self) -> bool:
        return self.usage is not None


def _is_output(delta: Any) -> bool:
    return bool(delta.content or delta.tool_calls or delta.refusal)


class _ChatReading:
    """Text of the first choice, tool calls, finish reasons and output pieces of some chunks."""

    def __init__(self, chunks: list[Any]) -> None:
        self.seen = len(chunks)
        self.parts: list[str] = []
        self.pieces = 0
        self.reasons: dict[int, str] = {}
        self.tools: dict[int, list[str]] = {}
        parts, reasons = self.parts, self.reasons
        for chunk in chunks:
            for choice in chunk.choices:
                delta = choice.delta
                content = delta.content
                if content or delta.tool_calls or delta.refusal:
                    self.pieces += 1
                    if choice.index == 0:
                        if content:
                            parts.append(content)
                        for call in delta.tool_calls or ():
                            self._note_tool(call)
                if choice.finish_reason:
                    reasons[choice.index] = choice.finish_reason

    def _note_tool(self, call: Any) -> None:
        name_args = self.tools.setdefault(call.index, ["", ""])
        function = call.function
        if function is not None:
            name_args[0] += function.name or ""
            name_args[1] += function.arguments or ""


class ResponsesFollower:
    """What a Responses API event stream has said so far."""

    operation = "responses"

    def __init__(self) -> None:
        self.kept: list[Any] = []
        self.parts: list[str] = []
        self.pieces = 0
        self.first_token_at: float | None = None
        self.head: Any = None
        self.final: Any = None

    def add(self, event: Any) -> bool:
        kind = event.type
        if kind == TEXT_DELTA or kind == "response.function_call_arguments.delta":
            if self.first_token_at is None:
                self.first_token_at = time.perf_counter()
            self.pieces += 1
            if kind == TEXT_DELTA:
                self.parts.append(event.delta)
        elif kind in FINAL_EVENTS:
            self.final = event.response
        elif kind == "response.created":
            self.head = event.response
        self.kept.append(event)
        return True

    def attrs(self) -> Attrs:
        if self.final is not None:
            return response_attrs("responses", self.final)
        return _head_attrs(self.head)

    def output(self) -> Any:
        if self.final is not None:
            return output_preview("responses", self.final, record_content=True)
        return "".join(self.parts)

    @property
    def has_usage(self) -> bool:
        return getattr(self.final, "usage", None) is not None


Follower = ChatFollower | ResponsesFollower


def _head_attrs(head: Any) -> Attrs:
    attrs: Attrs = {}
    model, head_id = getattr(head, "model", None), getattr(head, "id", None)
    if isinstance(model, str):
        attrs["gen_ai.response.model"] = model
    if isinstance(head_id, str):
        attrs["gen_ai.response.id"] = head_id
    return attrs


# --- live streams ------------------------------------------------------------------------
class TracedStream:
    """The SDK's ``Stream``, followed; iterate it, close it or use it in ``with``."""

    def __init__(self, stream: Any, call: Call, follower: Follower) -> None:
        self._stream = stream
        self._call = call
        self._follower = follower
        self._items = self._follow()

    def _follow(self) -> Generator[Any, None, None]:
        follower = self._follower
        try:
            for item in self._stream:
                if follower.add(item):
                    yield item
        except GeneratorExit:
            self._call.stream_closed(follower)
            raise
        except BaseException as error:
            self._call.stream_failed(error, follower)
            raise
        pending = self._call.stream_finished(follower)
        if pending is not None:
            pending.result()

    def __iter__(self) -> Iterator[Any]:
        return self._items

    def __next__(self) -> Any:
        return next(self._items)

    def close(self) -> None:
        self._items.close()
        self._stream.close()
        self._call.stream_closed(self._follower)

    def __enter__(self) -> TracedStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class AsyncTracedStream:
    """The SDK's ``AsyncStream``, followed; iterate it, close it or use it in ``async with``."""

    def __init__(self, stream: Any, call: Call, follower: Follower) -> None:
        self._stream = stream
        self._call = call
        self._follower = follower
        self._items = self._follow()

    async def _follow(self) -> AsyncGenerator[Any, None]:
        follower = self._follower
        try:
            async for item in self._stream:
                if follower.add(item):
                    yield item
        except GeneratorExit:
            self._call.stream_closed(follower)
            raise
        except BaseException as error:
            self._call.stream_failed(error, follower)
            raise
        await self._call.stream_finished_async(follower)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._items

    async def __anext__(self) -> Any:
        return await self._items.__anext__()

    async def close(self) -> None:
        await self._items.aclose()
        await self._stream.close()
        self._call.stream_closed(self._follower)

    async def __aenter__(self) -> AsyncTracedStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


# --- recorded streams ------------------------------------------------------------------------
class RecordedStream:
    """A finished stream as its caller saw it: what the step memo keeps for replays."""

    def __init__(self, operation: str, items: list[Any]) -> None:
        self.operation = operation
        self.items = items

    def __getstate__(self) -> dict[str, Any]:
        # Merging happens only when the memo is written, never for in-process runs.
        return {"operation": self.operation, "items": compact(self.operation, self.items)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.operation = state["operation"]
        self.items = state["items"]


class ReplayStream:
    """A recorded stream served again, shaped like the SDK's ``Stream``."""

    response = None

    def __init__(self, items: list[Any]) -> None:
        self._items = iter(items)

    def __iter__(self) -> Iterator[Any]:
        return self._items

    def __next__(self) -> Any:
        return next(self._items)

    def close(self) -> None:
        self._items = iter(())

    def __enter__(self) -> ReplayStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncReplayStream:
    """A recorded stream served again, shaped like the SDK's ``AsyncStream``."""

    response = None

    def __init__(self, items: list[Any]) -> None:
        self._items = iter(items)

    def __aiter__(self) -> AsyncReplayStream:
        return self

    async def __anext__(self) -> Any:
        try:
            return next(self._items)
        except StopIteration:
            raise StopAsyncIteration from None

    async def close(self) -> None:
        self._items = iter(())

    async def __aenter__(self) -> AsyncReplayStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


# --- merging runs of text chunks ----------------------------------------------------------
def compact(operation: str, items: list[Any]) -> list[Any]:
    text_of, merge = _MERGERS[operation]
    out: list[Any] = []
    pending: list[tuple[Any, str]] = []  # consecutive text-only items of one choice or part
    for item in items:
        text = text_of(item)
        if text is not None and pending and _same_slot(pending[0][0], item):
            pending.append((item, text))
            continue
        out.extend(_merged(pending, merge))
        pending = []
        if text is None:
            out.append(item)
        else:
            pending = [(item, text)]
    out.extend(_merged(pending, merge))
    return out


def _merged(pending: list[tuple[Any, str]], merge: Callable[[Any, str], Any]) -> list[Any]:
    if len(pending) < 2:
        return [item for item, _ in pending]
    return [merge(pending[0][0], "".join(text for _, text in pending))]


def _same_slot(first: Any, item: Any) -> bool:
    if hasattr(first, "choices"):
        return bool(first.choices[0].index == item.choices[0].index)
    return bool((first.item_id, first.content_index) == (item.item_id, item.content_index))


def _chat_text(chunk: Any) -> str | None:
    """The text of a chunk that carries text and nothing else."""
    if chunk.usage is not None or len(chunk.choices) != 1:
        return None
    choice = chunk.choices[0]
    delta = choice.delta
    plain = delta.tool_calls is None and delta.refusal is None and delta.role is None
    if plain and choice.finish_reason is None and choice.logprobs is None and delta.content:
        return str(delta.content)
    return None


def _chat_merge(first: Any, text: str) -> Any:
    choice = first.choices[0]
    delta = choice.delta.model_copy(update={"content": text})
    return first.model_copy(update={"choices": [choice.model_copy(update={"delta": delta})]})


def _responses_text(event: Any) -> str | None:
    if event.type == TEXT_DELTA and not getattr(event, "logprobs", None):
        return str(event.delta)
    return None


def _responses_merge(first: Any, text: str) -> Any:
    return first.model_copy(update={"delta": text})


_MERGERS: dict[str, tuple[Callable[[Any], str | None], Callable[[Any, str], Any]]] = {
    "chat": (_chat_text, _chat_merge),
    "responses": (_responses_text, _responses_merge),
}
