"""Added time per LLM call: nbflow's traced client against the bare OpenAI SDK.

The same chat completion calls, plain and streamed, against the offline model
over real HTTP: through ``openai.OpenAI``, and through ``nf.openai.OpenAI``
inside one in-process workflow run (every call an llm span with its
attributes, retry, fallback and rate-limit checks, and its events). Calls
alternate between the two clients one by one, in alternating order, so that
drift falls on both alike. Time to first token is measured to the first chunk
that carries text.

The offline model runs in its own process, as a provider would, so that its
work does not share this process's GIL with the clients being measured.

A streamed call through nbflow asks for usage (``stream_options``), which the
bare call does not: the third column shows what that alone costs the bare SDK.

    python bench/llm_overhead.py [--calls 1000]
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
GOAL = 0.05  # added time per call, as a fraction of the bare SDK's
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


def row(
    label: str, base: list[float], ours: list[float], fn: Callable[[list[float]], float]
) -> str:
    b, o = fn(base), fn(ours)
    return f"{label:30}{b * 1e3:9.3f} ms{o * 1e3:9.3f} ms{(o - b) * 1e6:+9.1f} µs{o / b:8.3f}"


def report(plains: dict[str, Any], streams: dict[str, Any], calls: int) -> tuple[str, bool]:
    def col(samples: dict[str, Any], name: str, which: int) -> list[float]:
        return [s[which] for s in samples[name]]

    lines = [
        f"{calls} calls per client and kind; nbflow {nf.__version__}, openai {openai.__version__},"
        f" Python {sys.version.split()[0]}, {sys.platform}",
        f"{'':30}{'bare SDK':>12}{'nbflow':>12}{'added':>12}{'ratio':>8}",
    ]
    ratios = []
    for title, samples in (("plain call", plains), ("streamed call", streams)):
        bare, ours = col(samples, "bare", 0), col(samples, "nbflow", 0)
        lines.append(row(f"{title}, mean", bare, ours, statistics.fmean))
        lines.append(row(f"{title}, median", bare, ours, statistics.median))
        ratios.append(statistics.fmean(ours) / statistics.fmean(bare))
    bare_ttft, ours_ttft = col(streams, "bare", 1), col(streams, "nbflow", 1)
    lines.append(row("time to first token, median", bare_ttft, ours_ttft, statistics.median))
    bare_stream = statistics.fmean(col(streams, "bare", 0))
    with_usage = statistics.fmean(col(streams, "bare asking for usage", 0))
    usage_us = (with_usage - bare_stream) * 1e6
    lines.append(
        f"of which asking for usage (stream_options) alone: {usage_us:+.1f} µs"
        f" per streamed call on the bare SDK, ratio {with_usage / bare_stream:.3f}"
    )
    ok = all(r - 1 <= GOAL for r in ratios)
    lines.append(
        f"goal, added time per call within {GOAL:.0%} of the bare SDK: "
        + ", ".join(f"{k} {r - 1:+.1%}" for k, r in zip(("plain", "streamed"), ratios, strict=True))
        + (" (met)" if ok else " (missed)")
    )
    return "\n".join(lines), ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--calls", type=int, default=1000, help="calls per client, plain and streamed"
    )
    args = parser.parse_args(argv)
    with offline_model() as base_url:
        bare = openai.OpenAI(base_url=base_url, api_key="offline", max_retries=0)
        traced = nf.openai.OpenAI(base_url=base_url, api_key="offline")
        warm = {"bare": lambda i: plain(bare, i), "nbflow": lambda i: plain(traced, i)}
        alternate(warm, 50)

        @nf.workflow
        def benchmark() -> tuple[dict[str, Any], dict[str, Any]]:
            plains = alternate(
                {"bare": lambda i: plain(bare, i), "nbflow": lambda i: plain(traced, i)}, args.calls
            )
            streams = alternate(
                {
                    "bare": lambda i: streamed(bare, i),
                    "nbflow": lambda i: streamed(traced, i),
                    "bare asking for usage": lambda i: streamed(
                        bare, i, stream_options={"include_usage": True}
                    ),
                },
                args.calls,
            )
            return plains, streams

        plains, streams = benchmark()
        trace = nf.last_run().trace()
        text, ok = report(plains, streams, args.calls)
        print(text)
        usage = trace.usage
        print(f"the run recorded {usage['llm_calls']} llm calls and {usage['total_tokens']} tokens")
        assert usage["llm_calls"] == 2 * args.calls, "every traced call is a span of the run"
        bare.close()
        traced.close()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
