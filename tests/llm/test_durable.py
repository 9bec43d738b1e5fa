"""LLM calls are durable steps: a replayed run gets recorded responses, not new requests."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

import cloudpickle
import pytest
from openai.types.chat import ChatCompletionMessageParam

import nbflow as nf
from nbflow import _context as ctx
from nbflow import constants as c
from nbflow._cache import local_cache
from nbflow._events import MemorySink
from nbflow._root import run_root, run_root_async
from nbflow.llm._stream import RecordedStream
from nbflow.llm.offline import OfflineServer, complete
from nbflow.runtime import codeship

from ..conftest import TEST_SECRET, wait_until

MODEL = "gpt-4o-mini"
QUESTION = "Why do durable workflows record their steps?"
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": QUESTION}]
EXPECTED = complete(MODEL, [("user", QUESTION)], max_tokens=None).text


class RecordingSink(MemorySink):
    """An in-memory log that keeps each step's result the way a worker would: pickled."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: dict[str, bytes] = {}

    def commit_step(self, event: Any, step: str, value: Any) -> None:
        self.steps[step] = cloudpickle.dumps(value)
        self.emit(event)


class Memo:
    def __init__(self, steps: dict[str, bytes]) -> None:
        self.steps = steps

    def lookup(self, step: str) -> tuple[bool, Any]:
        blob = self.steps.get(step)
        return (False, None) if blob is None else (True, cloudpickle.loads(blob))

    def logged(self, position: str) -> int:
        return 0  # these runs log nothing but their steps

    def made(self, position: str) -> str | None:
        return None


def run_with(wf: nf.Workflow, sink: MemorySink, memo: Memo | None = None) -> Any:
    """Run ``wf`` as a worker would, with this sink and these recorded steps."""
    context = ctx.RunContext("replay-test", sink, local_cache, memo=memo)
    if wf.is_async:
        return asyncio.run(run_root_async(context, wf, (), {}))
    return run_root(context, wf, (), {})


def texts(chunks: Any) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_a_replay_returns_recorded_calls_and_streams_without_new_requests(
    server: OfflineServer,
) -> None:
    client = nf.openai.OpenAI(base_url=server.base_url, api_key="k")

    @nf.workflow
    def agent() -> tuple[Any, ...]:
        plain = client.chat.completions.create(model=MODEL, messages=MESSAGES)
        streamed = texts(
            client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        )
        events = client.responses.create(model=MODEL, input=QUESTION, stream=True)
        deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
        vectors = client.embeddings.create(model="text-embedding-3-small", input=QUESTION)
        return (
            plain.choices[0].message.content,
            streamed,
            "".join(deltas),
            vectors.data[0].embedding,
        )

    sink = RecordingSink()
    first = run_with(agent, sink)
    assert first[:3] == (EXPECTED, EXPECTED, EXPECTED)
    assert len(sink.steps) == 4, "the four llm calls (the run's own result ends the run)"
    before = server.stats()["requests"]

    replay_sink = RecordingSink()
    llm_steps = {k: v for k, v in sink.steps.items() if k.count("/") == 2}
    assert run_with(agent, replay_sink, Memo(llm_steps)) == first
    assert server.stats()["requests"] == before, "not one request on replay"
    assert not [e for e in replay_sink.events if e.get("kind") == "llm"], (
        "replayed steps add no spans"
    )
    client.close()


def test_a_recorded_stream_is_kept_small_and_replays_the_same_text(server: OfflineServer) -> None:
    with nf.openai.OpenAI(base_url=server.base_url, api_key="k") as client:

        @nf.workflow
        def reader() -> str:
            return texts(
                client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
            )

        sink = RecordingSink()
        run_with(reader, sink)
    (blob,) = [v for k, v in sink.steps.items() if "chat" in k]
    recorded = cloudpickle.loads(blob)
    assert isinstance(recorded, RecordedStream)
    assert len(recorded.items) <= 4 < EXPECTED.count(" "), "role, merged text, finish"
    assert texts(recorded.items) == EXPECTED


def test_an_async_replay_serves_the_recorded_stream_asynchronously(server: OfflineServer) -> None:
    @nf.workflow
    async def reader() -> str:
        async with nf.openai.AsyncOpenAI(base_url=server.base_url, api_key="k") as client:
            stream = await client.chat.completions.create(
                model=MODEL, messages=MESSAGES, stream=True
            )
            async with stream:
                return texts([chunk async for chunk in stream])

    sink = RecordingSink()
    assert run_with(reader, sink) == EXPECTED
    llm_steps = {k: v for k, v in sink.steps.items() if k.count("/") == 2}
    before = server.stats()["requests"]
    assert run_with(reader, RecordingSink(), Memo(llm_steps)) == EXPECTED
    assert server.stats()["requests"] == before


@pytest.mark.slow
def test_a_worker_killed_mid_run_resumes_without_repeating_its_llm_calls(
    runtime, llm_worker_process, server, redis_url, r
) -> None:
    first = llm_worker_process()
    inputs = {"base_url": server.base_url, "url": redis_url, "tag": "k9", "question": QUESTION}
    run = runtime.start("two_calls", inputs)
    wait_until(lambda: r.get("gate:k9") is not None, timeout_s=30)
    assert server.stats()["requests"]["chat.completions"] == 2
    first.send_signal(signal.SIGKILL)
    first.wait(5)
    steps = r.hgetall(c.run_steps(run.id))
    recorded = [
        codeship.unpack(v, TEST_SECRET, codeship.step_for(run.id, k.decode()))
        for k, v in steps.items()
        if not k.decode().startswith(c.REPLAY_RECORDS)  # what replays compare, not results
    ]
    assert {type(v).__name__ for v in recorded} == {"ChatCompletion", "RecordedStream"}

    llm_worker_process()
    assert run.result(timeout_s=30) == (EXPECTED, EXPECTED)
    assert server.stats()["requests"]["chat.completions"] == 2, "the restart replayed both calls"
    assert int(r.get("gate:k9")) == 2
    restarted = [e for e in run.events() if e["type"] == "run.restarted"]
    assert restarted[0]["reason"] == "worker_lost"


def test_a_runtime_run_accounts_llm_tokens_and_keeps_content_out_when_asked(
    runtime, worker, server
) -> None:
    worker()
    run = private_run.submit(server.base_url)
    assert run.result(timeout_s=20) == "ok"
    meta = run.meta()
    assert int(meta["llm_calls"]) == 2
    assert (
        int(meta["output_tokens"])
        == 2 * complete(MODEL, [("user", SECRET)], max_tokens=None).completion_tokens
    )
    assert float(meta["cost_usd"]) > 0
    trace = run.trace()
    assert trace.usage["input_tokens"] == int(meta["input_tokens"])
    raw = json.dumps([e for e in run.events()])
    assert "Zanzibar" not in raw


SECRET = "Draft the Zanzibar acquisition memo"


@nf.workflow
def private_run(base_url: str) -> str:
    with nf.openai.OpenAI(base_url=base_url, api_key="k", record_content=False) as client:
        messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": SECRET}]
        client.chat.completions.create(model=MODEL, messages=messages)
        texts(client.chat.completions.create(model=MODEL, messages=messages, stream=True))
    return "ok"
