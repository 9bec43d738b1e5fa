"""Streams: followed chunk by chunk for the span, recorded whole for replays.

The caller iterates the SDK's own chunk objects. Each is noted on the way past
(first token time, text, finish reasons, usage); the usage-only chunk that
nbflow asked for on the caller's behalf is not passed on. When the stream ends
the span finishes; a stream cut short finishes it in error, with the tokens
seen so far, and the SDK's exception reaches the caller unchanged.

What a replay gets back is the stream as the caller saw it, with runs of text
chunks merged into one, so the memo stays small: the same text, in fewer chunks.
The runs are merged as they pass, which also spares a long stream from keeping
every chunk alive until its end.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from typing import TYPE_CHECKING, Any

from nbflow.llm._attrs import Attrs, output_preview, response_attrs, usage_attrs

if TYPE_CHECKING:
    from nbflow.llm._call import Call

TEXT_DELTA = "response.output_text.delta"
FINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


class TextRun:
    """Consecutive chunks that only carry text, kept as the first chunk and the texts.

    Streams are recorded like this as they pass, so a finished stream holds on
    to a few chunk objects rather than one per token; a replay gets the run back
    as one chunk with the whole text.
    """

    __slots__ = ("first", "parts")

    def __init__(self, first: Any, text: str) -> None:
        self.first = first
        self.parts = [text]

    def merged(self) -> Any:
        if len(self.parts) == 1:
            return self.first
        text = "".join(self.parts)
        if getattr(self.first, "type", None) == TEXT_DELTA:  # a Responses API event
            return self.first.model_copy(update={"delta": text})
        choice = self.first.choices[0]
        delta = choice.delta.model_copy(update={"content": text})
        return self.first.model_copy(
            update={"choices": [choice.model_copy(update={"delta": delta})]}
        )


class ChatFollower:
    """What a chat completion stream has said so far."""

    operation = "chat"

    def __init__(self, *, hide_usage: bool, logprobs: bool = False) -> None:
        self.hide_usage = hide_usage
        self.merges = not logprobs  # chunks with log probabilities are kept one by one
        self.items: list[Any] = []  # chunks and TextRuns, in order
        self.parts: list[str] = []  # the first choice's text
        self.pieces = 0
        self.first_token_at: float | None = None
        self.head: Any = None
        self.usage: Any = None
        self.reasons: dict[int, str] = {}
        self.tools: dict[int, list[str]] = {}
        self._run: TextRun | None = None

    def add(self, chunk: Any) -> bool:
        """Note a chunk; False when the caller must not see it."""
        # The common chunk, one piece of the first choice's text, takes the short way:
        # this runs for every token of every stream.
        choices = chunk.choices
        if len(choices) == 1 and self.head is not None and chunk.usage is None:
            choice = choices[0]
            delta = choice.delta
            text = delta.content
            if (
                text
                and choice.finish_reason is None
                and choice.index == 0
                and delta.tool_calls is None
            ):
                if self.first_token_at is None:
                    self.first_token_at = time.perf_counter()
                self.pieces += 1
                self.parts.append(text)
                run = self._run
                if run is not None:
                    run.parts.append(text)
                elif self.merges:
                    self._run = TextRun(chunk, text)
                    self.items.append(self._run)
                else:
                    self.items.append(chunk)
                return True
        return self._add_other(chunk)

    def _add_other(self, chunk: Any) -> bool:
        self._run = None
        if self.head is None:
            self.head = chunk
        if chunk.usage is not None:
            self.usage = chunk.usage
            if self.hide_usage and not chunk.choices:
                return False
        for choice in chunk.choices:
            self._note(choice)
        self.items.append(chunk)
        return True

    def _note(self, choice: Any) -> None:
        delta = choice.delta
        if delta.content or delta.tool_calls or delta.refusal:
            if self.first_token_at is None:
                self.first_token_at = time.perf_counter()
            self.pieces += 1
            if choice.index == 0:
                if delta.content:
                    self.parts.append(delta.content)
                for call in delta.tool_calls or ():
                    self._note_tool(call)
        if choice.finish_reason:
            self.reasons[choice.index] = choice.finish_reason

    def _note_tool(self, call: Any) -> None:
        name_args = self.tools.setdefault(call.index, ["", ""])
        function = call.function
        if function is not None:
            name_args[0] += function.name or ""
            name_args[1] += function.arguments or ""

    def attrs(self) -> Attrs:
        attrs = _head_attrs(self.head)
        if self.reasons:
            attrs["gen_ai.response.finish_reasons"] = [
                self.reasons[i] for i in sorted(self.reasons)
            ]
        attrs.update(usage_attrs(self.usage, attrs.get("gen_ai.response.model")))
        return attrs

    def output(self) -> Any:
        text = "".join(self.parts)
        if not self.tools:
            return text
        calls = [{"name": n, "arguments": a} for n, a in self.tools.values()]
        return {"content": text, "tool_calls": calls}

    @property
    def has_usage(self) -> bool:
        return self.usage is not None


class ResponsesFollower:
    """What a Responses API event stream has said so far."""

    operation = "responses"

    def __init__(self) -> None:
        self.items: list[Any] = []  # events and TextRuns, in order
        self.parts: list[str] = []
        self.pieces = 0
        self.first_token_at: float | None = None
        self.head: Any = None
        self.final: Any = None
        self._run: TextRun | None = None

    def add(self, event: Any) -> bool:
        kind = event.type
        if kind == TEXT_DELTA or kind == "response.function_call_arguments.delta":
            if self.first_token_at is None:
                self.first_token_at = time.perf_counter()
            self.pieces += 1
        if kind == TEXT_DELTA and not event.logprobs:
            self._add_text(event)
            return True
        self._run = None
        if kind in FINAL_EVENTS:
            self.final = event.response
        elif kind == "response.created":
            self.head = event.response
        self.items.append(event)
        return True

    def _add_text(self, event: Any) -> None:
        self.parts.append(event.delta)
        run = self._run
        if run is not None and _same_part(run.first, event):
            run.parts.append(event.delta)
        else:
            self._run = TextRun(event, event.delta)
            self.items.append(self._run)

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


def _same_part(first: Any, event: Any) -> bool:
    return bool(
        first.item_id == event.item_id
        and first.output_index == event.output_index
        and first.content_index == event.content_index
    )


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

    def chunks(self) -> list[Any]:
        return [item.merged() if isinstance(item, TextRun) else item for item in self.items]

    def __getstate__(self) -> dict[str, Any]:
        return {"operation": self.operation, "items": self.chunks()}

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
