"""nbflow used as users use it, for mypy to check (tests/typing/test_usage.py); never run.

Each ``assert_type`` pins a type the public surface must keep.
"""

from __future__ import annotations

from typing import Any, assert_type

from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionFunctionToolParam
from openai.types.responses import FunctionToolParam, Response

import nbflow as nf
from nbflow.llm import Retry


def llm_calls() -> None:
    client = nf.openai.OpenAI(base_url="http://127.0.0.1:8777/v1", retry=Retry(max_retries=2))
    reply = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    assert_type(reply, ChatCompletion)
    text: str | None = reply.choices[0].message.content
    assert_type(client.responses.create(model="gpt-4o-mini", input="hi"), Response)
    vectors = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert_type(vectors, CreateEmbeddingResponse)
    quieter = client.with_options(timeout=5.0, record_content=False)
    assert_type(quieter, nf.openai.OpenAI)
    with nf.openai.OpenAI(api_key="k", timeout=30.0, max_retries=3) as scoped:
        assert_type(scoped, nf.openai.OpenAI)
    del text


@nf.tool
def lookup(city: str) -> str:
    return city


def tool_calls() -> None:
    client = nf.openai.OpenAI(base_url="http://127.0.0.1:8777/v1")
    chat_tools = nf.tool_definitions([lookup])
    assert_type(chat_tools, list[ChatCompletionFunctionToolParam])
    reply = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], tools=chat_tools
    )
    assert_type(nf.call_tools(reply, [lookup]), list[dict[str, Any]])
    response_tools = nf.tool_definitions([lookup], api="responses")
    assert_type(response_tools, list[FunctionToolParam])
    client.responses.create(model="gpt-4o-mini", input="hi", tools=response_tools)


async def async_llm_calls() -> None:
    client = nf.openai.AsyncOpenAI(base_url="http://127.0.0.1:8777/v1")
    reply = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    assert_type(reply, ChatCompletion)
    async with client as scoped:
        assert_type(scoped, nf.openai.AsyncOpenAI)


@nf.component
def fetch(url: str) -> str:
    return url


@nf.component(retry=3, cache=3600, timeout_s=10)
def summarize(text: str) -> str:
    return text[:10]


@nf.workflow
def blog(topic: str) -> str:
    nf.progress("outline")
    nf.emit("chunk")
    approved = nf.wait_for_input("approve", prompt="Publish?", timeout_s=60)
    nf.sleep(1)
    nf.publish("plan", {"topic": topic})
    return str(summarize(fetch(topic))) + str(approved)


@nf.workflow(name="named")
async def named() -> int:
    return 1


def components_and_workflows() -> None:
    assert_type(fetch, nf.Component)
    assert_type(summarize, nf.Component)
    assert_type(blog, nf.Workflow)
    assert_type(named, nf.Workflow)
    patient = fetch.with_retry(5, backoff="fixed", initial_s=0.5, on=(TimeoutError,))
    assert_type(patient.with_cache(60).with_timeout(30), nf.Component)


def runs_and_waits() -> None:
    blog("x")
    last = nf.last_run()
    assert_type(last, nf.LocalRun | nf.Run | None)
    if last is not None:
        status: str = last.status()
        trace: nf.Trace = last.trace()
        del status, trace
    run = blog.submit("x")
    assert_type(run, nf.Run)
    status = run.wait(timeout_s=5)
    assert_type(status, str)
    value: Any = run.result(timeout_s=10)
    for event in run.events(after="0"):
        assert_type(event, dict[str, Any])
    run.send_input("approve", True)
    runs = blog.submit_many([("a",), {"topic": "b"}])
    assert_type(runs, list[nf.Run])
    assert_type(nf.wait(runs, timeout_s=60), list[str])
    assert_type(nf.attach(run.id), nf.Run)
    runtime = nf.connect()
    assert_type(runtime, nf.Runtime)
    del value
