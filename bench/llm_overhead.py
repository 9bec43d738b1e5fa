"""Added time per LLM call: nbflow's traced client against the bare OpenAI SDK.

The same chat completion calls, plain and streamed, against the offline model
over real HTTP in one process: through ``openai.OpenAI``, and through
``nf.openai.OpenAI`` inside one in-process workflow run (every call an llm span
with its attributes, retry and fallback machinery, memo record and events).
Rounds alternate the order of the two clients, so that drift (CPU frequency,
the server warming up) falls on both alike. Time to first token is measured to
the first chunk that carries text.

The offline server is started with TCP_NODELAY on its connections (see
``nodelay_listener``): without it every keep-alive response waits ~40 ms for a
delayed ACK, which would hide any client-side cost. ``--as-served`` skips that.

    python bench/llm_overhead.py [--calls 1000] [--rounds 10] [--as-served]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import socket
import statistics
import sys
import time
from collections.abc import Iterator
from typing import Any

import openai

import nbflow as nf
from nbflow.llm.offline import OfflineServer, serve_offline

MODEL = "gpt-4o-mini"
GOAL = 0.05  # added time per call, as a fraction of the bare SDK's


def question(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Question {i}: how do durable agent workflows recover?"}]


def plain_calls(client: Any, first: int, calls: int) -> list[float]:
    took = []
    for i in range(first, first + calls):
        started = time.perf_counter()
        client.chat.completions.create(model=MODEL, messages=question(i))
        took.append(time.perf_counter() - started)
    return took


def streamed_calls(client: Any, first: int, calls: int) -> tuple[list[float], list[float]]:
    took, ttft = [], []
    for i in range(first, first + calls):
        started = time.perf_counter()
        first_token = None
        for chunk in client.chat.completions.create(model=MODEL, messages=question(i), stream=True):
            if first_token is None and chunk.choices and chunk.choices[0].delta.content:
                first_token = time.perf_counter()
        took.append(time.perf_counter() - started)
        ttft.append((first_token or time.perf_counter()) - started)
    return took, ttft


def measure(bare: Any, traced: Any, calls: int, rounds: int) -> dict[str, dict[str, list[float]]]:
    samples: dict[str, dict[str, list[float]]] = {
        name: {"plain": [], "stream": [], "ttft": []} for name in ("bare", "nbflow")
    }
    per_round = calls // rounds
    for r in range(rounds):
        order = [("bare", bare), ("nbflow", traced)]
        if r % 2:
            order.reverse()
        for name, client in order:
            gc.collect()
            samples[name]["plain"] += plain_calls(client, r * per_round, per_round)
        for name, client in order:
            gc.collect()
            took, ttft = streamed_calls(client, r * per_round, per_round)
            samples[name]["stream"] += took
            samples[name]["ttft"] += ttft
    return samples


@contextlib.contextmanager
def nodelay_listener() -> Iterator[None]:
    """Make ``serve_offline`` listen on a socket whose accepted connections get TCP_NODELAY.

    asyncio sets TCP_NODELAY only on sockets whose ``proto`` is IPPROTO_TCP;
    ``socket.create_server`` leaves it 0, and so do the connections it accepts.
    """
    original = socket.create_server

    def create_server(address: Any, *, family: int = socket.AF_INET, **options: Any) -> Any:
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(options.get("backlog") or 128)
        return sock

    socket.create_server = create_server  # type: ignore[assignment]
    try:
        yield
    finally:
        socket.create_server = original


def start_server(as_served: bool) -> OfflineServer:
    if as_served:
        return serve_offline()
    with nodelay_listener():
        return serve_offline()


def summary(samples: dict[str, dict[str, list[float]]], calls: int) -> tuple[str, bool]:
    rows = [f"{'':24}{'bare SDK':>11}{'nbflow':>11}{'added':>12}{'ratio':>9}"]
    ok = True
    for kind, label in (("plain", "plain call"), ("stream", "streamed call"), ("ttft", "time to 1st token")):
        for stat_name, stat in (("mean", statistics.fmean), ("median", statistics.median)):
            bare, ours = stat(samples["bare"][kind]), stat(samples["nbflow"][kind])
            added_us = (ours - bare) * 1e6
            rows.append(
                f"{label + ' ' + stat_name:24}{bare * 1e3:9.3f}ms{ours * 1e3:9.3f}ms"
                f"{added_us:+10.1f}µs{ours / bare:9.3f}"
            )
            if kind != "ttft" and stat_name == "mean":
                ok = ok and ours / bare - 1 <= GOAL
    head = f"{calls} chat completion calls per client and kind, {sys.platform}, Python {sys.version.split()[0]}"
    verdict = f"goal (added time per call within {GOAL:.0%} of the bare SDK): {'met' if ok else 'MISSED'}"
    return "\n".join([head, *rows, verdict]), ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000, help="calls per client, plain and streamed")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--as-served", action="store_true", help="keep the server's Nagle delays")
    args = parser.parse_args(argv)
    with start_server(args.as_served) as server:
        bare = openai.OpenAI(base_url=server.base_url, api_key="offline", max_retries=0)
        traced = nf.openai.OpenAI(base_url=server.base_url, api_key="offline")
        warm = max(20, args.calls // 50)
        plain_calls(bare, 0, warm), plain_calls(traced, 0, warm)

        @nf.workflow
        def benchmark() -> dict[str, dict[str, list[float]]]:
            return measure(bare, traced, args.calls, args.rounds)

        samples = benchmark()
        run = nf.last_run().trace()
        spans = run.state.spans.values()
        assert sum(1 for s in spans if s.kind == "llm") == 2 * args.calls, "every traced call is a span"
        text, ok = summary(samples, args.calls)
        print(text)
        print(f"the run recorded {run.usage['llm_calls']} llm calls, {run.usage['total_tokens']} tokens")
        bare.close()
        traced.close()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
