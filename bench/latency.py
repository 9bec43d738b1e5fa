"""Submit-to-start and emit-to-reader latency of nbflow, against the raw Redis floor.

- submit-to-start: a quiet runtime (one idle worker), one run at a time; the
  gap between the run.queued event's timestamp (taken by the client) and the
  run.started event's (taken by the worker), same clock.
- emit-to-reader: a run emits its wall clock every few ms; a client following
  run.events() notes when each chunk arrives.
- raw floor: XADD from one connection to a XREADGROUP BLOCK waiting on
  another (redis-py, separate thread), the wake-up delay.

    python bench/latency.py [--runs 200] [--emits 500] [--redis URL]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

import _common as cm
import redis


def submit_to_start(bench: cm.Bench, runs: int) -> tuple[list[float], list[float]]:
    import bench_apps

    from nbflow.runtime.client import Runtime

    rt = Runtime(bench.url, secret=cm.SECRET.encode())
    by_events, client_seen = [], []
    try:
        rt.submit(bench_apps.noop, (), {}).wait(10)
        for _ in range(runs):
            t0 = time.time()
            run = rt.submit(bench_apps.noop, (), {})
            queued = started = None
            for event in run.events(block_ms=1000):
                if event["type"] == "run.queued":
                    queued = event["ts"]
                elif event["type"] == "run.started":
                    started = event["ts"]
                    client_seen.append((time.time() - t0) * 1000)
            if queued and started:
                by_events.append((started - queued) * 1000)
            time.sleep(0.005)
    finally:
        rt.close()
    return by_events, client_seen


def emit_to_reader(bench: cm.Bench, emits: int) -> list[float]:
    import bench_apps

    from nbflow.runtime.client import Runtime

    rt = Runtime(bench.url, secret=cm.SECRET.encode())
    gaps = []
    try:
        run = rt.submit(bench_apps.ticker, (emits, 0.005), {})
        for event in run.events(block_ms=1000):
            if event["type"] == "output":
                gaps.append((time.time() - float(event["chunk"])) * 1000)
    finally:
        rt.close()
    return gaps[5:]  # skip the warm-up


def raw_floor(url: str, n: int) -> list[float]:
    stream, group = "bench:floor", "g"
    writer = redis.Redis.from_url(url)
    reader = redis.Redis.from_url(url)
    writer.delete(stream)
    writer.xgroup_create(stream, group, id="0", mkstream=True)
    got: list[float] = []
    ready = threading.Event()

    def read() -> None:
        while len(got) < n:
            ready.set()
            reply = reader.xreadgroup(group, "c", {stream: ">"}, count=1, block=2000)
            now = time.perf_counter()
            for _s, entries in reply or []:
                for _id, fields in entries:
                    got.append((now - float(fields[b"t"])) * 1000)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    for _ in range(n):
        ready.wait(2)
        ready.clear()
        time.sleep(0.002)  # let the reader block
        writer.xadd(stream, {"t": repr(time.perf_counter())})
    thread.join(10)
    writer.delete(stream)
    writer.close()
    reader.close()
    return got


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--emits", type=int, default=500)
    ap.add_argument("--floor", type=int, default=1000)
    ap.add_argument("--redis", help="use this server instead of starting the embedded one")
    args = ap.parse_args()
    print(f"nbflow latency benchmark: {cm.machine()}")
    with cm.Bench(url=args.redis) as bench:
        print(f"server: {bench.url}")
        floor = raw_floor(bench.url, args.floor)
        bench.nbflow_workers(1)
        by_events, client_seen = submit_to_start(bench, args.runs)
        emits = emit_to_reader(bench, args.emits)
    rows = [
        [
            "raw floor: XADD -> blocked XREADGROUP wake",
            len(floor),
            cm.pct(floor, 50),
            cm.pct(floor, 99),
        ],
        [
            "submit-to-start (run.queued ts -> run.started ts)",
            len(by_events),
            cm.pct(by_events, 50),
            cm.pct(by_events, 99),
        ],
        [
            "submit-to-start seen by client (submit -> run.started read)",
            len(client_seen),
            cm.pct(client_seen, 50),
            cm.pct(client_seen, 99),
        ],
        [
            "emit-to-reader (nf.emit -> run.events() yields it)",
            len(emits),
            cm.pct(emits, 50),
            cm.pct(emits, 99),
        ],
    ]
    cm.table("Latency (ms)", ["figure", "n", "p50", "p99"], rows)
    f50 = cm.pct(floor, 50)
    s50, s99 = cm.pct(by_events, 50), cm.pct(by_events, 99)
    print(
        f"\ngoal p50 within 2x floor ({2 * f50:.2f} ms): submit-to-start {'met' if s50 <= 2 * f50 else 'NOT met'} "
        f"({s50 / f50:.1f}x floor); p99 under 2 ms: {'met' if s99 < 2 else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
