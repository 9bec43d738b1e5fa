"""Following streams: what a span learns from chunks, and what a replay gets back."""

from __future__ import annotations

import pickle
from typing import Any

from openai.types.chat import ChatCompletionChunk

from nbflow.llm._stream import ChatFollower, RecordedStream


def chunk(
    index: int = 0, usage: dict[str, int] | None = None, finish: str | None = None, **delta: Any
) -> ChatCompletionChunk:
    choice = {"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}
    choices = [] if usage else [choice]
    return ChatCompletionChunk.model_validate({
        "id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": choices, "usage": usage,
    })  # fmt: skip


def tool_delta(name: str, arguments: str) -> dict[str, Any]:
    function = {"name": name, "arguments": arguments}
    return {"index": 0, "id": "t", "type": "function", "function": function}


def follow(chunks: list[ChatCompletionChunk], **options: Any) -> tuple[ChatFollower, list[Any]]:
    follower = ChatFollower(hide_usage=True, **options)
    shown = [c for c in chunks if follower.add(c)]
    return follower, shown


def test_text_tool_calls_finish_reasons_and_usage_are_read_from_chunks() -> None:
    usage = {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11}
    follower, shown = follow([
        chunk(role="assistant", content=""),
        chunk(content="Hel"), chunk(content="lo"),
        chunk(tool_calls=[tool_delta("search", '{"q":')]),
        chunk(tool_calls=[{"index": 0, "function": {"arguments": ' "x"}'}}]),
        chunk(index=1, content="other choice"),
        chunk(finish="tool_calls"), chunk(index=1, finish="stop"),
        chunk(usage=usage),
    ])  # fmt: skip
    assert len(shown) == 8, "the usage chunk nbflow asked for is not shown"
    assert follower.output() == {
        "content": "Hello",
        "tool_calls": [{"name": "search", "arguments": '{"q": "x"}'}],
    }
    attrs = follower.attrs()
    assert attrs["gen_ai.response.finish_reasons"] == ["tool_calls", "stop"]
    assert attrs["gen_ai.usage.input_tokens"] == 7 and attrs["gen_ai.usage.output_tokens"] == 4
    assert follower.pieces == 5 and follower.first_token_at is not None


def test_a_recording_merges_runs_of_text_and_keeps_everything_else() -> None:
    chunks = [chunk(role="assistant", content="")] + [chunk(content=w) for w in ("a", "b", "c")]
    chunks += [chunk(finish="stop")]
    follower, shown = follow(chunks)
    recorded = pickle.loads(pickle.dumps(RecordedStream("chat", follower.items)))
    replay = recorded.items
    assert len(replay) == 3
    assert replay[1].choices[0].delta.content == "abc" and replay[1].id == "c1"
    assert replay[2].choices[0].finish_reason == "stop"
    text = "".join(c.choices[0].delta.content or "" for c in shown)
    assert text == "".join(c.choices[0].delta.content or "" for c in replay)


def test_chunks_with_log_probabilities_are_recorded_one_by_one() -> None:
    chunks = [chunk(role="assistant", content="")] + [chunk(content=w) for w in ("a", "b")]
    follower, _ = follow(chunks, logprobs=True)
    assert len(RecordedStream("chat", follower.items).chunks()) == 3
