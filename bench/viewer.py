"""The run viewer in a real browser: opening a huge finished run, and following a busy live one.

Both runs are written straight into the run's Redis stream, as a worker would
write them, so the figures measure the viewer (server read, SSE, fold, drawing)
and not a workflow:

- open: a finished run of ``--spans`` spans (one workflow span, components under
  it, every tenth one an LLM call with tokens). Time from clicking it in ``/ui``
  to its span tree and timeline drawn (the trace says it has every span, and a
  row and a timeline bar are on screen), measured in the page.
- follow: a running run to which a writer thread appends ``--rate`` events a
  second (span started/finished pairs and output lines) for ``--seconds``. The
  page counts animation frames while it follows the run: a frame is dropped for
  each 16.7 ms past the first that a frame interval lasts.

Debian's Chromium (``/usr/lib/chromium/chromium``), headless, through Playwright;
the page is ``nbflow api``'s ``/ui`` (the extension's rendering code, bundled).

    python bench/viewer.py [--spans 10000] [--rate 200] [--seconds 10] [--redis URL]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import redis
from _common import Bench

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nbflow import constants as c  # noqa: E402
from nbflow.runtime.protocol import encode_event  # noqa: E402
from tests.browser import CHROMIUM_ARGS, chromium_executable  # noqa: E402

FRAME_MS = 1000 / 60
OPEN_JS = """async (runId) => {
  const t0 = performance.now();
  document.querySelector(`.nbflow-run-row[data-run="${runId}"]`).click();
  for (;;) {
    await new Promise(requestAnimationFrame);
    const trace = document.querySelector('.nbflow-trace');
    const bar = trace && trace.querySelector('.nbflow-span-row .nbflow-bar:not([hidden])');
    if (trace && trace.dataset.status === 'succeeded' && trace.dataset.spans === '%d' && bar) {
      return performance.now() - t0;
    }
  }
}"""
FRAMES_JS = """async (seconds) => {
  const deltas = [];
  let last = performance.now();
  const end = last + seconds * 1000;
  while (last < end) {
    const now = await new Promise(requestAnimationFrame);
    deltas.push(now - last);
    last = now;
  }
  const trace = document.querySelector('.nbflow-trace');
  return {deltas, events: Number(trace.dataset.events), spans: Number(trace.dataset.spans)};
}"""


def write_run(r: redis.Redis, run_id: str, events: list[dict[str, Any]], status: str) -> None:
    now = time.time()
    meta = {"run_id": run_id, "workflow": "bench_trace", "status": status, "created_at": repr(now)}
    if status != "queued":
        meta["started_at"] = repr(now)
    pipe = r.pipeline(transaction=False)
    pipe.hset(c.run_meta(run_id), mapping=meta)
    pipe.zadd(c.RUNS_INDEX, {run_id: now})
    for n, event in enumerate(events):
        pipe.xadd(c.run_log(run_id), {"e": encode_event(event)})
        if n % 5_000 == 4_999:
            pipe.execute()
    pipe.execute()


def span_events(n: int, t0: float, *, parent: str = "root") -> list[dict[str, Any]]:
    events = []
    for i in range(n):
        kind = "llm" if i % 10 == 0 else "component"
        start, end = t0 + i * 0.01, t0 + i * 0.01 + 0.008
        attrs = (
            {"gen_ai.usage.input_tokens": 120, "gen_ai.usage.output_tokens": 40}
            if kind == "llm"
            else {}
        )
        events.append({"type": "span.started", "ts": start, "span_id": f"s{i}", "parent_id": parent,
                       "name": f"step_{i}", "kind": kind})  # fmt: skip
        events.append({"type": "span.finished", "ts": end, "span_id": f"s{i}", "status": "ok",
                       "attempts": 1, "attrs": attrs})  # fmt: skip
    return events


def finished_run(r: redis.Redis, spans: int) -> str:
    t0 = time.time() - spans * 0.01 - 1
    events = [
        {"type": "run.queued", "ts": t0, "workflow": "bench_trace"},
        {"type": "run.started", "ts": t0, "workflow": "bench_trace"},
        {
            "type": "span.started",
            "ts": t0,
            "span_id": "root",
            "parent_id": None,
            "name": "bench_trace",
            "kind": "workflow",
        },
        *span_events(spans - 1, t0),
        {"type": "span.finished", "ts": t0 + spans * 0.01, "span_id": "root", "status": "ok"},
        {"type": "run.succeeded", "ts": t0 + spans * 0.01, "output": None},
    ]
    write_run(r, "benchopen", events, "succeeded")
    r.hset(c.run_meta("benchopen"), mapping={"ended_at": repr(time.time())})
    return "benchopen"


def live_writer(
    r: redis.Redis, run_id: str, rate: int, seconds: float, stop: threading.Event
) -> None:
    t0 = time.time()
    start = [{"type": "run.queued", "ts": t0, "workflow": "bench_trace"},
             {"type": "run.started", "ts": t0, "workflow": "bench_trace"},
             {"type": "span.started", "ts": t0, "span_id": "root", "parent_id": None,
              "name": "bench_trace", "kind": "workflow"}]  # fmt: skip
    write_run(r, run_id, start, "running")
    sent, begun = 0, time.monotonic()
    while not stop.is_set() and time.monotonic() - begun < seconds:
        due = int((time.monotonic() - begun) * rate)
        pipe = r.pipeline(transaction=False)
        for n in range(sent, due):
            now, i = time.time(), n // 3
            event = (
                {"type": "span.started", "ts": now, "span_id": f"s{i}", "parent_id": "root",
                 "name": f"call_{i}", "kind": "llm"}
                if n % 3 == 0 else
                {"type": "span.finished", "ts": now, "span_id": f"s{i}", "status": "ok",
                 "attrs": {"gen_ai.usage.input_tokens": 50, "gen_ai.usage.output_tokens": 10}}
                if n % 3 == 1 else
                {"type": "output", "ts": now, "chunk": f"token chunk {n}\n"}
            )  # fmt: skip
            pipe.xadd(c.run_log(run_id), {"e": encode_event(event)})
        pipe.execute()
        sent = max(sent, due)
        time.sleep(0.005)
    end = {"type": "run.succeeded", "ts": time.time(), "output": sent}
    r.xadd(c.run_log(run_id), {"e": encode_event(end)})
    r.hset(c.run_meta(run_id), mapping={"status": "succeeded", "ended_at": repr(time.time())})


def serve_api(url: str) -> tuple[str, Any]:
    import uvicorn

    from nbflow.api import create_app
    from nbflow.runtime.client import Runtime

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    app = create_app(Runtime(url, cluster=False))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws="none"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server


def frame_stats(deltas: list[float]) -> dict[str, float]:
    dropped = sum(max(0, round(d / FRAME_MS) - 1) for d in deltas)
    return {"frames": len(deltas), "dropped": dropped, "longest_ms": max(deltas, default=0.0)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spans", type=int, default=10_000)
    parser.add_argument("--rate", type=int, default=200, help="events a second in the live run")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--redis", help="an existing server (it is not flushed)")
    args = parser.parse_args()
    binary = chromium_executable()
    if binary is None:
        print("Debian's chromium is not installed (apt-get install chromium)", file=sys.stderr)
        return 1
    from playwright.sync_api import sync_playwright

    print(f"nbflow viewer benchmark: CPython {platform.python_version()}, {os.cpu_count()} CPUs")
    with Bench(url=args.redis) as bench:
        r = redis.Redis.from_url(bench.url)
        api, server = serve_api(bench.url)
        open_id = finished_run(r, args.spans)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=binary, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{api}/ui")
            page.wait_for_selector(f'.nbflow-run-row[data-run="{open_id}"]')
            opened_ms = page.evaluate(OPEN_JS % args.spans, open_id)
            page.evaluate("document.querySelector('.nbflow-scroll').scrollTop = 1e9")
            scrolled = frame_stats(page.evaluate(FRAMES_JS, 1)["deltas"])
            print(
                f"open: {args.spans:,}-span finished run, click to tree + timeline drawn: ", end=""
            )
            print(f"{opened_ms:,.0f} ms")
            print(f"      scrolled to the end: {scrolled['frames']} frames in 1 s, ", end="")
            print(f"{scrolled['dropped']} dropped")

            stop = threading.Event()
            writer = threading.Thread(
                target=live_writer, args=(r, "benchlive", args.rate, args.seconds, stop)
            )
            writer.start()
            page.goto("about:blank")
            page.goto(f"{api}/ui#run=benchlive")
            page.wait_for_selector('.nbflow-trace[data-live="1"]')
            measured = page.evaluate(FRAMES_JS, max(args.seconds - 2, 1))
            stop.set()
            writer.join()
            stats = frame_stats(measured["deltas"])
            print(
                f"follow: {args.rate} events/s for {args.seconds:.0f} s: {stats['frames']} frames, "
                f"{stats['dropped']} dropped, longest {stats['longest_ms']:.0f} ms; "
                f"{measured['events']:,} events folded, {measured['spans']:,} spans"
            )
            print(json.dumps({"open_ms": round(opened_ms), "follow": stats, "scroll": scrolled}))
            browser.close()
        server.should_exit = True
    return 0


if __name__ == "__main__":
    sys.exit(main())
