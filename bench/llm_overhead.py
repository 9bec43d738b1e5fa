"""Time nbflow's traced OpenAI client adds per call over the bare SDK, in microseconds.

The same chat completion calls, plain and streamed, against the offline model
over real HTTP: through ``openai.OpenAI``, and through ``nf.openai.OpenAI``
inside one in-process workflow run (every call an llm span with its
attributes, retry, fallback and rate-limit checks, and its events). Calls
alternate between the clients one by one, in alternating order, and each
nbflow call is compared with the bare call made next to it (a paired
difference), so that drift falls on both alike; the median of the paired
differences is the figure judged.

A streamed call through nbflow asks for usage (``stream_options``), which the
bare call does not by default: streamed calls are compared with the bare SDK
asking for usage too, and what asking costs the bare SDK is shown apart.

The offline model runs in its own process, as a provider would, so that its
work does not share this process's GIL with the clients being measured. Then,
without a network, the wrapper's own Python per call and per chunk: the same
recorded reply and chunks (the SDK's own objects) through nbflow's call path
and stream wrapper, against iterating them bare.

    .venv/bin/python bench/llm_overhead.py [--calls 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import openai

import nbflow as nf

MODEL = "gpt-4o-mini"
GOAL_PLAIN_US = 50.0  # added per plain call
GOAL_STREAMED_US = 100.0  # added per streamed call, beyond asking for usage
START_TIMEOUT_S = 30.0


@contextmanager
def offline_model() -> Iterator[str]:
    """Start the offline model in its own process; its base URL."""
    code = "from nbflow.llm.offline import main; main(['--port', '0'])"
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "server.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-c", code], stdout=out, stderr=subprocess.STDOUT
            )
        try:
            yield _wait_for_url(log, proc)
        finally:
            proc.terminate()
            proc.wait(10)


def _wait_for_url(log: Path, proc: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and proc.poll() is None:
        found = re.search(r"at (http://\S+/v1)", log.read_text(errors="replace"))
        if found:
            return found.group(1)
        time.sleep(0.05)
    raise RuntimeError(f"the offline model did not start:\n{log.read_text(errors='replace')}")


def question(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Question {i}: how do durable agent workflows recover?"}]


def plain(client: Any, i: int) -> tuple[float, float]:
    started = time.perf_counter()
    client.chat.completions.create(model=MODEL, messages=question(i))
    return time.perf_counter() - started, 0.0


def streamed(client: Any, i: int, **options: Any) -> tuple[float, float]:
    started = time.perf_counter()
    first_token = 0.0
    for chunk in client.chat.completions.create(
        model=MODEL, messages=question(i), stream=True, **options
    ):
        if not first_token and chunk.choices and chunk.choices[0].delta.content:
            first_token = time.perf_counter()
    return time.perf_counter() - started, first_token - started


Contender = Callable[[int], tuple[float, float]]


def alternate(contenders: dict[str, Contender], calls: int) -> dict[str, list[tuple[float, float]]]:
    """Each call index through every contender, the order reversed on every other index."""
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in contenders}
    names = list(contenders)
    for i in range(calls):
        for name in names if i % 2 else reversed(names):
            samples[name].append(contenders[name](i))
    return samples


def paired_us(samples: dict[str, list[tuple[float, float]]], ours: str, base: str) -> list[float]:
    """Each call's time minus the time of the call made next to it, in microseconds."""
    return [(o[0] - b[0]) * 1e6 for o, b in zip(samples[ours], samples[base], strict=True)]


def measure_round(bare: Any, traced: Any, calls: int) -> dict[str, Any]:
    @nf.workflow
    def benchmark() -> tuple[dict[str, Any], dict[str, Any]]:
        plains = alternate(
            {"bare": lambda i: plain(bare, i), "nbflow": lambda i: plain(traced, i)}, calls
        )
        streams = alternate(
            {
                "bare": lambda i: streamed(bare, i),
                "bare asking for usage": lambda i: streamed(
                    bare, i, stream_options={"include_usage": True}
                ),
                "nbflow": lambda i: streamed(traced, i),
            },
            calls,
        )
        return plains, streams

    plains, streams = benchmark()
    usage = nf.last_run().trace().usage
    assert usage["llm_calls"] == 2 * calls, "every traced call is a span of the run"
    return {
        "plain bare ms": statistics.median(s[0] for s in plains["bare"]) * 1e3,
        "streamed bare ms": statistics.median(s[0] for s in streams["bare"]) * 1e3,
        "plain": statistics.median(paired_us(plains, "nbflow", "bare")),
        "streamed": statistics.median(paired_us(streams, "nbflow", "bare asking for usage")),
        "usage": statistics.median(paired_us(streams, "bare asking for usage", "bare")),
        "ttft": statistics.median(
            (o[1] - b[1]) * 1e6
            for o, b in zip(streams["nbflow"], streams["bare asking for usage"], strict=True)
        ),
    }


def wrapper_alone(base_url: str, reps: int) -> dict[str, float]:
    """nbflow's own Python per call and per chunk, on a recorded reply, without a network."""
    import httpx
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

    from nbflow.llm._call import Call, TracedStream
    from nbflow.llm.client import TRACED

    body = {"model": MODEL, "messages": question(0)}
    auth = {"Authorization": "Bearer offline"}
    url = f"{base_url}/chat/completions"
    reply = ChatCompletion.model_validate(httpx.post(url, json=body, headers=auth).json())
    sse = httpx.post(
        url, json={**body, "stream": True, "stream_options": {"include_usage": True}}, headers=auth
    ).text
    chunks = [
        ChatCompletionChunk.model_validate_json(line[5:])
        for line in sse.splitlines()
        if line.startswith("data:") and "[DONE]" not in line
    ]
    settings = nf.openai.OpenAI(base_url=base_url, api_key="offline")._settings
    endpoint = TRACED[("chat", "completions")]["create"]

    def traced_plain() -> None:
        call = Call(settings, endpoint, dict(body))
        call.prepare()
        call.admit()
        call.succeeded(reply)

    def traced_stream() -> None:
        call = Call(settings, endpoint, {**body, "stream": True})
        call.prepare()
        call.admit()
        for _ in TracedStream(iter(chunks), call, call.follower()):
            pass

    def bare_stream() -> None:
        for _ in iter(chunks):
            pass

    @nf.workflow
    def timed(fn: Callable[[], None]) -> float:
        started = time.perf_counter()
        for _ in range(reps):
            fn()
        return (time.perf_counter() - started) / reps * 1e6

    per = {
        name: min(timed(fn) for _ in range(5))
        for name, fn in (
            ("plain", traced_plain),
            ("streamed", traced_stream),
            ("bare", bare_stream),
        )
    }
    stream_us = per["streamed"] - per["bare"]
    return {
        "plain": per["plain"],
        "streamed": stream_us,
        "chunks": len(chunks),
        "per chunk": (stream_us - per["plain"]) / len(chunks),
    }


def report(rounds: list[dict[str, Any]], alone: dict[str, float], calls: int) -> tuple[str, bool]:
    lines = [
        f"{calls} calls per client and kind a round, {len(rounds)} rounds; nbflow {nf.__version__},"
        f" openai {openai.__version__}, Python {sys.version.split()[0]}, {sys.platform}",
        "added per call, µs: the median of each nbflow call minus the bare call next to it",
        f"{'round':<7}{'bare plain':>12}{'plain':>9}{'bare stream':>13}{'streamed':>10}"
        f"{'usage':>8}{'ttft':>8}",
    ]
    for i, r in enumerate(rounds, 1):
        lines.append(
            f"{i:<7}{r['plain bare ms']:>9.3f} ms{r['plain']:>+9.1f}"
            f"{r['streamed bare ms']:>10.3f} ms{r['streamed']:>+10.1f}"
            f"{r['usage']:>+8.1f}{r['ttft']:>+8.1f}"
        )
    plain_us = statistics.median(r["plain"] for r in rounds)
    stream_us = statistics.median(r["streamed"] for r in rounds)
    lines += [
        "(streamed: against the bare SDK asking for usage too; usage: what asking costs the"
        " bare SDK; ttft: added time to first token)",
        f"nbflow's own Python, no network (a recorded reply, {alone['chunks']} chunks): plain call"
        f" {alone['plain']:.1f} µs, streamed call {alone['streamed']:.1f} µs,"
        f" {alone['per chunk']:.2f} µs per chunk",
    ]
    ok_plain, ok_stream = plain_us <= GOAL_PLAIN_US, stream_us <= GOAL_STREAMED_US
    lines.append(
        f"goal, plain call added <= {GOAL_PLAIN_US:.0f} µs: {plain_us:+.1f} µs (median of rounds),"
        f" {'met' if ok_plain else 'NOT met'}"
    )
    lines.append(
        f"goal, streamed call added <= {GOAL_STREAMED_US:.0f} µs beyond asking for usage:"
        f" {stream_us:+.1f} µs (median of rounds), {'met' if ok_stream else 'NOT met'}"
    )
    return "\n".join(lines), ok_plain and ok_stream


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000, help="calls per client and kind a round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with offline_model() as base_url:
        bare = openai.OpenAI(base_url=base_url, api_key="offline", max_retries=0)
        traced = nf.openai.OpenAI(base_url=base_url, api_key="offline")
        warm = {"bare": lambda i: plain(bare, i), "nbflow": lambda i: plain(traced, i)}
        alternate(warm, 50)
        rounds = []
        for i in range(args.rounds):
            rounds.append(measure_round(bare, traced, args.calls))
            r = rounds[-1]
            print(
                f"round {i + 1}/{args.rounds}: plain {r['plain']:+.1f} µs,"
                f" streamed {r['streamed']:+.1f} µs",
                flush=True,
            )
        alone = wrapper_alone(base_url, 2000)
        text, ok = report(rounds, alone, args.calls)
        print(text)
        bare.close()
        traced.close()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
