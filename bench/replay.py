"""Re-attach to a finished 100,000-event run and fold it to the spans DataFrame.

A worker runs a workflow that emits ``--events`` output chunks; once it has
finished, a fresh client attaches to it by id and folds its whole log with
``run.trace().spans``. Reported: time to build the run, time to read + fold it,
and the peak Python memory of the fold (tracemalloc).

    python bench/replay.py [--events 100000] [--redis URL]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc

import _common as cm


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--redis", help="use this server instead of starting the embedded one")
    args = ap.parse_args()
    import bench_apps

    from nbflow.runtime.client import Runtime

    print(f"nbflow replay benchmark: {cm.machine()}")
    with cm.Bench(url=args.redis) as bench:
        bench.nbflow_workers(1)
        rt = Runtime(bench.url, secret=cm.SECRET.encode())
        t0 = time.perf_counter()
        run = rt.submit(bench_apps.chatter, (args.events,), {})
        status = run.wait(args.timeout)
        build_s = time.perf_counter() - t0
        length = rt.redis.xlen(f"nbflow:{{{run.id}}}:log")
        rt.close()

        fresh = Runtime(bench.url, secret=cm.SECRET.encode())
        gc.collect()
        tracemalloc.start()
        t0 = time.perf_counter()
        attached = fresh.attach(run.id)
        trace = attached.trace()
        read_s = time.perf_counter() - t0
        spans = trace.spans
        fold_s = time.perf_counter() - t0
        _cur, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        t0 = time.perf_counter()
        again = fresh.attach(run.id).trace().spans
        untraced_s = time.perf_counter() - t0
        fresh.close()
    cm.table(
        "Replay of a finished run",
        ["figure", "value"],
        [
            ["run status", status],
            ["events in the log", length],
            ["build: submit -> terminal (s)", build_s],
            ["attach + read all events (s, under tracemalloc)", read_s],
            ["attach + read + fold to spans (s, under tracemalloc)", fold_s],
            ["attach + read + fold to spans (s, no tracemalloc)", untraced_s],
            ["peak Python memory of read + fold (MiB)", peak / 2**20],
            ["spans rows", len(spans)],
        ],
    )
    assert len(again) == len(spans)
    return 0


if __name__ == "__main__":
    sys.exit(main())
