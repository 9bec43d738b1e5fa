"""Durable waits at scale: what waiting costs, and how fast runs come back.

1. ``--waiting`` runs (default 10,000) wait for input on one worker with 8 slots:
   server memory per waiting run (INFO used_memory, before and after) and the
   worker's RSS; then every run is answered and the time until all have finished.
2. Resume latency, p50 / p99: from calling ``send_input`` to the first line of the
   step after the wait (its wall clock, recorded as the run's result), one run at a
   time on an idle worker.
3. A parent that fans out ``--children`` (default 500) child runs and gathers them:
   wall time with 1 and with 2 workers.

    .venv/bin/python bench/waits.py [--waiting 10000] [--children 500] [--samples 200]
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import _common as cm
import redis


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _wait_status(rt: object, run_ids: list[str], status: str, timeout_s: float) -> None:
    from nbflow import constants as c

    r = rt.redis  # type: ignore[attr-defined]
    deadline = time.monotonic() + timeout_s
    pending = list(run_ids)
    while pending:
        pipe = r.pipeline(transaction=False)
        for run_id in pending:
            pipe.hget(c.run_meta(run_id), "status")
        pending = [i for i, s in zip(pending, pipe.execute(), strict=True) if s != status.encode()]
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(pending)} runs not {status} after {timeout_s} s")
        time.sleep(0.05)


def waiting_many(bench: cm.Bench, n: int) -> list[list[object]]:
    import bench_apps

    from nbflow.runtime.client import Runtime

    rt = Runtime(bench.url, secret=cm.SECRET.encode())
    r = redis.Redis.from_url(bench.url)
    [worker] = bench.nbflow_workers(1, concurrency=8)
    try:
        before = int(r.info("memory")["used_memory"])
        runs = rt.submit_many(bench_apps.awaits_approval, [((i,), {}) for i in range(n)])
        ids = [run.id for run in runs]
        started = time.perf_counter()
        _wait_status(rt, ids, "waiting", 600)
        all_waiting_s = time.perf_counter() - started
        after = int(r.info("memory")["used_memory"])
        rss_mb = _rss_kb(worker.pid) / 1024
        started = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda run: run.send_input("approve", True), runs))
        answered_s = time.perf_counter() - started
        _wait_status(rt, ids, "succeeded", 600)
        resumed_s = time.perf_counter() - started
    finally:
        bench.stop(worker)
        rt.close()
        r.close()
    per_run = (after - before) / n
    return [
        ["runs waiting for input", n],
        ["all waiting after submit (s)", round(all_waiting_s, 2)],
        ["server memory per waiting run (bytes)", round(per_run)],
        ["worker RSS with all of them waiting (MiB)", round(rss_mb, 1)],
        ["send_input to all (s)", round(answered_s, 2)],
        ["all resumed and finished (s)", round(resumed_s, 2)],
    ]


def resume_latency(bench: cm.Bench, samples: int) -> list[list[object]]:
    import bench_apps

    from nbflow.runtime.client import Runtime

    rt = Runtime(bench.url, secret=cm.SECRET.encode())
    [worker] = bench.nbflow_workers(1, concurrency=8)
    latencies = []
    try:
        for i in range(samples):
            run = rt.submit(bench_apps.awaits_approval, (i,), {})
            _wait_status(rt, [run.id], "waiting", 30)
            sent = time.time()
            run.send_input("approve", True)
            latencies.append((run.result(timeout_s=30) - sent) * 1000)
    finally:
        bench.stop(worker)
        rt.close()
    return [
        ["send_input -> next step starts, p50 (ms)", round(cm.pct(latencies, 50), 2)],
        ["p99 (ms)", round(cm.pct(latencies, 99), 2)],
    ]


def fan_out(bench: cm.Bench, children: int, workers: int) -> float:
    import bench_apps

    from nbflow.runtime.client import Runtime

    rt = Runtime(bench.url, secret=cm.SECRET.encode())
    procs = bench.nbflow_workers(workers)
    try:
        started = time.perf_counter()
        total = rt.submit(bench_apps.fan_out, (children,), {}).result(timeout_s=600)
        seconds = time.perf_counter() - started
        assert total == sum(i + 1 for i in range(children)), total
    finally:
        for proc in procs:
            bench.stop(proc)
        rt.close()
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--waiting", type=int, default=10_000, help="runs waiting at once")
    parser.add_argument("--samples", type=int, default=200, help="resume-latency samples")
    parser.add_argument("--children", type=int, default=500, help="children of the fan-out")
    args = parser.parse_args()
    print(cm.machine())
    with cm.Bench() as bench:
        cm.table("waiting for input", ["figure", "value"], waiting_many(bench, args.waiting))
        bench.flush()
        cm.table("resume latency", ["figure", "value"], resume_latency(bench, args.samples))
        bench.flush()
        rows = []
        for workers in (1, 2):
            rows.append([workers, round(fan_out(bench, args.children, workers), 2)])
            bench.flush()
        cm.table(f"fan-out of {args.children} children", ["workers", "wall time (s)"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
