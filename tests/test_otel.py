"""OpenTelemetry export to a local OTLP/HTTP receiver: the tree, timings, statuses and tokens."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import nbflow as nf
from nbflow import _events as ev
from nbflow import constants as c
from nbflow.llm.offline import OfflineServer, serve_offline
from nbflow.otel import ExportFailed, OtlpExporter, traces_url
from nbflow.otel._spans import span_id_of, trace_id_of
from nbflow.runtime.client import Runtime

from .conftest import ROOT, TEST_SECRET, wait_until
from .otlp_receiver import ReceivedSpan, Receiver, ReceiverServer

MODEL = "gpt-4o-mini"


@pytest.fixture(scope="module")
def receiver_server() -> Iterator[ReceiverServer]:
    running = ReceiverServer()
    yield running
    running.close()


@pytest.fixture
def receiver(receiver_server: ReceiverServer) -> Receiver:
    receiver_server.receiver.clear()
    receiver_server.receiver.fail_next = 0
    return receiver_server.receiver


@pytest.fixture(scope="module")
def llm() -> Iterator[OfflineServer]:
    with serve_offline() as running:
        yield running


@nf.tool
def lookup(city: str) -> str:
    """Facts about a city."""
    return f"{city} has a river"


@nf.component
def outline(topic: str) -> list[str]:
    return [f"{topic}: part {i}" for i in (1, 2)]


@nf.component
def shaky(x: int) -> int:
    raise ValueError(f"no good: {x}")


def research_workflow(base_url: str) -> nf.Workflow:
    client = nf.openai.OpenAI(base_url=base_url, api_key="offline")

    @nf.component
    def write(part: str) -> str:
        reply = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": f"Write about {part}"}]
        )
        return str(reply.choices[0].message.content)

    @nf.workflow
    def research(topic: str) -> str:
        messages: list[Any] = [{"role": "user", "content": f"Please lookup {topic}"}]
        reply = client.chat.completions.create(
            model=MODEL, messages=messages, tools=nf.tool_definitions([lookup])
        )
        nf.call_tools(reply, [lookup])
        with contextlib.suppress(ValueError):
            shaky(1)
        return " ".join(write(part) for part in outline(topic))

    return research


def by_name(spans: list[ReceivedSpan]) -> dict[str, list[ReceivedSpan]]:
    named: dict[str, list[ReceivedSpan]] = {}
    for span in spans:
        named.setdefault(span.name, []).append(span)
    return named


# --- to_otel -----------------------------------------------------------------------------------
def test_to_otel_sends_one_trace_with_the_span_tree_timings_and_statuses(
    receiver: Receiver, llm: OfflineServer
) -> None:
    research = research_workflow(llm.base_url)
    research("Lisbon")
    trace = nf.last_run().trace()
    trace_id = trace.to_otel(receiver.url)

    assert receiver.paths == ["/v1/traces"]  # the base URL got the traces path
    (got,) = receiver.traces().values()
    assert trace_id == f"{trace_id_of(trace.run_id):032x}" == got[0].trace_id
    state = trace.state
    assert (
        len(got) == len(state.spans) == 9
    )  # research, chat, lookup, shaky, outline, 2 x (write, chat)
    ids = {span_id_of(trace.run_id, s.span_id): s for s in state.spans.values()}
    for span in got:
        mine = ids[int(span.span_id, 16)]
        parent = state.spans.get(mine.parent_id or "")
        expected_parent = (
            "" if parent is None else f"{span_id_of(trace.run_id, parent.span_id):016x}"
        )
        assert span.parent_id == expected_parent
        assert span.name == mine.name
        assert abs(span.start_ns - mine.start * 1e9) < 1_000  # to the microsecond
        assert mine.end is not None and abs(span.end_ns - mine.end * 1e9) < 1_000
        assert span.attrs["nbflow.kind"] == mine.kind
        assert span.resource["service.name"] == "nbflow"
        assert span.scope == "nbflow"
    root = next(s for s in got if not s.parent_id)
    assert (root.name, root.status) == ("research", "OK")
    assert root.attrs["nbflow.workflow"] == "research"
    assert root.attrs["nbflow.run.status"] == "succeeded"
    assert root.attrs["openinference.span.kind"] == "CHAIN"
    assert root.attrs["input.value"] == '{"topic": "Lisbon"}'


def test_llm_spans_carry_genai_and_openinference_attributes(
    receiver: Receiver, llm: OfflineServer
) -> None:
    research_workflow(llm.base_url)("Porto")
    trace = nf.last_run().trace()
    trace.to_otel(receiver.url)
    named = by_name(receiver.spans())
    llm_spans = named[f"chat {MODEL}"]
    assert len(llm_spans) == 3
    expected = [s for s in trace.state.spans.values() if s.kind == "llm"]
    for span, mine in zip(sorted(llm_spans, key=lambda s: s.start_ns), expected, strict=True):
        a = span.attrs
        assert span.kind == 3  # SPAN_KIND_CLIENT: a call out of the process
        assert a["gen_ai.operation.name"] == "chat"
        assert a["gen_ai.request.model"] == a["gen_ai.response.model"] == MODEL
        assert a["gen_ai.usage.input_tokens"] == mine.input_tokens > 0
        assert a["gen_ai.usage.output_tokens"] == mine.output_tokens > 0
        assert a["openinference.span.kind"] == "LLM"
        assert a["llm.model_name"] == MODEL
        assert a["llm.token_count.prompt"] == a["gen_ai.usage.input_tokens"]
        assert a["llm.token_count.completion"] == a["gen_ai.usage.output_tokens"]
        assert a["llm.token_count.total"] == mine.tokens
        assert a["llm.input_messages.0.message.role"] == "user"
        assert a["input.mime_type"] == "application/json"
    first = min(llm_spans, key=lambda s: s.start_ns).attrs
    assert first["llm.input_messages.0.message.content"] == "Please lookup Porto"
    assert first["llm.output_messages.0.message.tool_calls.0.tool_call.function.name"] == "lookup"
    assert '"name": "lookup"' in first["llm.tools.0.tool.json_schema"]
    assert first["gen_ai.response.finish_reasons"] == ["tool_calls"]
    last = max(llm_spans, key=lambda s: s.start_ns).attrs
    assert last["output.value"] == last["llm.output_messages.0.message.content"]
    assert last["output.mime_type"] == "text/plain"


def test_tool_and_error_spans(receiver: Receiver, llm: OfflineServer) -> None:
    research_workflow(llm.base_url)("Oslo")
    nf.last_run().trace().to_otel(receiver.url)
    named = by_name(receiver.spans())
    (tool,) = named["lookup"]
    assert tool.status == "OK"
    assert tool.attrs["openinference.span.kind"] == "TOOL"
    assert tool.attrs["tool.name"] == tool.attrs["gen_ai.tool.name"] == "lookup"
    assert tool.attrs["tool.description"] == "Facts about a city."
    assert tool.attrs["gen_ai.tool.call.id"].startswith("call_")
    assert tool.attrs["output.value"] == "Oslo has a river"
    (failed,) = named["shaky"]
    assert (failed.status, failed.status_message) == ("ERROR", "ValueError: no good: 1")
    ((name, when, attrs),) = failed.events
    assert name == "exception" and when == failed.end_ns
    assert attrs["exception.type"] == "ValueError"
    assert "raise ValueError" in attrs["exception.stacktrace"]


def test_sending_a_run_again_sends_the_same_ids(receiver: Receiver, llm: OfflineServer) -> None:
    research_workflow(llm.base_url)("Rome")
    trace = nf.last_run().trace()
    with OtlpExporter(receiver.url) as exporter:
        assert exporter.export(trace) == exporter.export(trace)
    first, second = receiver.requests
    assert first.SerializeToString() == second.SerializeToString()


def test_a_run_that_failed_before_any_span_is_one_error_span(receiver: Receiver) -> None:
    events = [
        ev.make(ev.RUN_QUEUED, workflow="ghost"),
        ev.make(ev.RUN_STARTED, workflow="ghost"),
        ev.make(ev.RUN_FAILED, error="PayloadRejected: bad code", reason="payload_unloadable"),
    ]
    nf.Trace("r-ghost", events).to_otel(receiver.url)
    (span,) = receiver.spans()
    assert (span.name, span.status, span.parent_id) == ("ghost", "ERROR", "")
    assert span.attrs["nbflow.run.reason"] == "payload_unloadable"
    assert span.end_ns == round(events[-1]["ts"] * 1e9)


def test_retries_are_span_events_and_cancelled_spans_are_not_errors(receiver: Receiver) -> None:
    attempts: list[int] = []

    @nf.component(retry={"attempts": 3, "initial_s": 0.01, "on": (ConnectionError,)})
    def flaky() -> int:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("down")
        return 1

    @nf.workflow
    def wf() -> int:
        return int(flaky())

    wf()
    nf.last_run().trace().to_otel(receiver.url)
    span = by_name(receiver.spans())["flaky"][0]
    assert [name for name, _, _ in span.events] == ["nbflow.retry", "nbflow.retry"]
    assert span.events[0][2]["error_type"] == "ConnectionError"
    assert span.attrs["nbflow.attempts"] == 3
    receiver.clear()
    events = [
        ev.make(ev.RUN_STARTED, workflow="w"),
        ev.make(ev.SPAN_STARTED, span_id="s1", parent_id=None, name="w", kind="workflow"),
        ev.make(ev.RUN_CANCELLED, reason="cancelled"),
    ]
    nf.Trace("r-cancel", events).to_otel(receiver.url)
    (cancelled,) = receiver.spans()
    assert (cancelled.status, cancelled.attrs["nbflow.status"]) == ("UNSET", "cancelled")


def test_project_and_service_name_go_on_the_resource(receiver: Receiver) -> None:
    nf.component(lambda: 1, name="one")()
    nf.last_run().trace().to_otel(receiver.url, project="agents", service_name="svc")
    (span,) = receiver.spans()
    assert span.resource["openinference.project.name"] == "agents"
    assert span.resource["service.name"] == "svc"


def test_an_unreachable_collector_is_export_failed() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    nf.component(lambda: 1, name="one")()
    with pytest.raises(ExportFailed, match=f"127.0.0.1:{port}/v1/traces"):
        nf.last_run().trace().to_otel(f"http://127.0.0.1:{port}", timeout_s=1)


# --- endpoints -----------------------------------------------------------------------------------
def test_endpoints_are_base_or_traces_urls_from_the_argument_or_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert traces_url("http://h:4318") == "http://h:4318/v1/traces"
    assert traces_url("http://h:6006/") == "http://h:6006/v1/traces"
    assert traces_url("https://h/otlp/v1/traces") == "https://h/otlp/v1/traces"
    assert traces_url("https://h/prefix") == "https://h/prefix/v1/traces"
    for name in (
        "NBFLOW_OTLP_ENDPOINT",
        *(f"OTEL_EXPORTER_OTLP_{s}ENDPOINT" for s in ("", "TRACES_")),
    ):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(nf.ConfigError, match="NBFLOW_OTLP_ENDPOINT"):
        traces_url(None)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://sdk:4318")
    assert traces_url(None) is None  # the SDK reads its own variable
    monkeypatch.setenv("NBFLOW_OTLP_ENDPOINT", "http://mine:4318")
    assert traces_url(None) == "http://mine:4318/v1/traces"
    with pytest.raises(nf.ConfigError, match="http"):
        traces_url("localhost:4318")


# --- nbflow export -------------------------------------------------------------------------
@nf.workflow
def short(n: int) -> int:
    return n + 1


@nf.workflow
def slow(delay_s: float) -> str:
    time.sleep(delay_s)
    return "late"


@pytest.fixture
def exporter_process(
    redis_url: str, receiver: Receiver
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(*extra: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "NBFLOW_SECRET": TEST_SECRET.decode()}
        env.pop("NBFLOW_OTLP_ENDPOINT", None)
        cmd = [sys.executable, "-m", "nbflow.cli", "export", "--redis", redis_url]
        cmd += ["--endpoint", receiver.url, "--interval-s", "0.1", "--timeout-s", "2", *extra]
        procs.append(
            subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        )
        return procs[-1]

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        if proc.stderr:
            proc.stderr.close()


def sent_runs(receiver: Receiver) -> dict[str, int]:
    """Run id -> how many times its trace arrived."""
    counts: dict[str, int] = {}
    for request in receiver.requests:
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                run_ids = {
                    kv.value.string_value
                    for span in scope_spans.spans
                    for kv in span.attributes
                    if kv.key == "nbflow.run_id"
                }
                for run_id in run_ids:
                    counts[run_id] = counts.get(run_id, 0) + 1
    return counts


def test_nbflow_export_sends_runs_as_they_end_and_none_twice_across_restarts(
    runtime: Runtime, worker: Any, receiver: Receiver, exporter_process: Any, r: redis.Redis
) -> None:
    worker()
    before = short.submit(0)
    before.result(timeout_s=30)
    going = slow.submit(1.0)  # started before the exporter, ends after it started
    first = exporter_process()
    wait_until(lambda: r.exists(c.EXPORT_CURSOR.format(name="otel")), 15)
    runs = [short.submit(i) for i in range(3)]
    for run in runs:
        run.result(timeout_s=30)
    assert going.result(timeout_s=30) == "late"
    wanted = {run.id for run in [*runs, going]}
    wait_until(lambda: wanted <= set(sent_runs(receiver)), 20)
    first.send_signal(signal.SIGTERM)
    assert first.wait(10) == 0
    later = short.submit(9)  # ends while no exporter runs
    later.result(timeout_s=30)
    exporter_process()
    wait_until(lambda: later.id in sent_runs(receiver), 20)
    time.sleep(0.5)  # a few more polls of the restarted exporter, which must send nothing again
    counts = sent_runs(receiver)
    assert before.id not in counts  # it ended before the first start, which had no --since
    assert {run_id: counts[run_id] for run_id in [*wanted, later.id]} == dict.fromkeys(
        [*wanted, later.id], 1
    )


def test_nbflow_export_once_all_backfills_and_retries_a_collector_that_fails(
    runtime: Runtime, worker: Any, receiver: Receiver, exporter_process: Any
) -> None:
    worker()
    runs = [short.submit(i) for i in range(2)]
    for run in runs:
        run.result(timeout_s=30)
    receiver.fail_next = 1_000  # every attempt of the first export fails
    failing = exporter_process("--once", "--all", "--name", "backfill", "--timeout-s", "0.5")
    assert failing.wait(30) == 0
    assert failing.stderr is not None and b"did not take its spans" in failing.stderr.read()
    assert sent_runs(receiver) == {}
    receiver.fail_next = 0
    again = exporter_process("--once", "--name", "backfill")  # its cursor stayed before both
    assert again.wait(30) == 0
    assert sent_runs(receiver) == {run.id: 1 for run in runs}


def test_without_the_otel_extra_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # None in sys.modules makes the import fail, as it does where the extra is not installed.
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    with pytest.raises(nf.ConfigError, match=r"pip install 'nbflow\[otel\]'"):
        OtlpExporter("http://127.0.0.1:4318")


def test_the_exporter_rides_out_an_unreachable_runtime(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    from nbflow.otel.follow import ExportOptions, Follower

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        url = f"redis://127.0.0.1:{sock.getsockname()[1]}"
    runtime = Runtime(url, secret=TEST_SECRET, cluster=False)
    with OtlpExporter(receiver.url) as exporter:
        follower = Follower(runtime, exporter, ExportOptions(interval_s=0.01))
        stop = threading.Event()
        thread = threading.Thread(target=follower.run, args=(stop,), daemon=True)
        thread.start()

        def warned() -> int:
            return sum("unreachable" in r.getMessage() for r in list(caplog.records))

        wait_until(lambda: warned() >= 2, 10)  # it failed, waited, and tried again
        assert thread.is_alive()
        stop.set()
        thread.join(10)
    runtime.close()
    assert not thread.is_alive()
