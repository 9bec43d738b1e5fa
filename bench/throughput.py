"""End-to-end throughput of nbflow runs against taskiq, Celery and RQ on one server.

Every contender runs on the same TCP Valkey node (started here on a loopback
port; Celery and RQ need TCP URLs), one section at a time, with the server
flushed in between. A figure is jobs submitted back to back and then waited on
until each one is terminal: runs/s = jobs / (first submit -> last terminal).

- nbflow one-step: a no-op workflow (run.queued, run.started, run.succeeded all
  kept in its log), with 1 and 2 worker processes (concurrency 8 each).
- nbflow three-step: a workflow calling three components, each recorded as a
  span with its result committed.
- submissions/s on one connection: Runtime.submit in a loop, and Runtime.start
  by name.
- peers: taskiq (RedisStreamBroker + result backend), Celery (redis broker and
  backend, solo pool), RQ (SimpleWorker), each with 1 and 2 worker processes.

    python bench/throughput.py [--jobs 2000] [--submits 5000] [--redis URL] [--no-peers]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import shutil
import sys
import time
from typing import Any

import _common as cm
import redis


def nbflow_runs(
    bench: cm.Bench, *, workers: int, jobs: int, workflow: str, timeout_s: float
) -> float:
    import bench_apps

    from nbflow.runtime.client import Runtime

    bench.flush()
    procs = bench.nbflow_workers(workers)
    rt = Runtime(bench.url, secret=cm.SECRET.encode())
    try:
        wf = getattr(bench_apps, workflow)
        rt.submit(wf, (), {}).wait(10)  # warm: code shipped and loaded on a worker
        t0 = time.perf_counter()
        runs = [rt.submit(wf, (), {}) for _ in range(jobs)]
        deadline = time.monotonic() + timeout_s
        for run in runs:
            status = run.wait(max(0.1, deadline - time.monotonic()))
            if status != "succeeded":
                raise RuntimeError(f"{run.id} ended {status}")
        elapsed = time.perf_counter() - t0
        events = sum(rt.redis.xlen(f"nbflow:{{{r.id}}}:log") for r in runs[:5]) / 5
        print(
            f"  nbflow {workflow} x{workers}: {jobs} runs in {elapsed:.2f} s "
            f"(~{events:.0f} events kept per run)",
            flush=True,
        )
        return jobs / elapsed
    finally:
        rt.close()
        for p in procs:
            bench.stop(p)


def submissions(bench: cm.Bench, n: int) -> tuple[float, float, float]:
    import bench_apps

    from nbflow.runtime.client import Runtime

    bench.flush()
    rt = Runtime(bench.url, secret=cm.SECRET.encode())
    try:
        rt.submit(bench_apps.noop, (), {})
        t0 = time.perf_counter()
        for _ in range(n):
            rt.submit(bench_apps.noop, (), {})
        by_value = n / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for _ in range(n):
            rt.start("noop", {})
        by_name = n / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for start in range(0, n, 500):
            rt.submit_many(bench_apps.noop, [((), {})] * min(500, n - start))
        batched = n / (time.perf_counter() - t0)
        return by_value, by_name, batched
    finally:
        rt.close()
        bench.flush()


# --- peers ---------------------------------------------------------------------


def taskiq_runs(bench: cm.Bench, *, workers: int, jobs: int, timeout_s: float) -> float:
    bench.flush()
    exe = shutil.which("taskiq") or str(
        __import__("pathlib").Path(sys.executable).with_name("taskiq")
    )
    procs = [
        bench.spawn(
            [exe, "worker", "bench_apps:taskiq_broker", "--workers", "1"], BENCH_PEER_URL=bench.url
        )
        for _ in range(workers)
    ]
    try:
        apps = _peer_module(bench.url)

        async def go() -> float:
            broker = apps.taskiq_broker
            await broker.startup()
            try:
                warm = await apps.taskiq_noop.kiq()
                await warm.wait_result(timeout=30, check_interval=0.01)
                await asyncio.sleep(1.0)  # the other workers' start-up
                t0 = time.perf_counter()
                handles = [await apps.taskiq_noop.kiq() for _ in range(jobs)]
                for h in handles:
                    res = await h.wait_result(timeout=timeout_s, check_interval=0.001)
                    if res.is_err:
                        raise RuntimeError(res.error)
                return jobs / (time.perf_counter() - t0)
            finally:
                await broker.shutdown()

        return asyncio.run(go())
    finally:
        for p in procs:
            bench.stop(p)


def celery_runs(bench: cm.Bench, *, workers: int, jobs: int, timeout_s: float) -> float:
    bench.flush()
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "bench_apps:celery_app",
        "worker",
        "-P",
        "solo",
        "-c",
        "1",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-l",
        "warning",
    ]
    procs = [
        bench.spawn(argv + ["-n", f"w{i}@%h"], BENCH_PEER_URL=bench.url) for i in range(workers)
    ]
    try:
        apps = _peer_module(bench.url)
        apps.celery_noop.delay().get(timeout=30)
        time.sleep(1.0)
        t0 = time.perf_counter()
        results = [apps.celery_noop.delay() for _ in range(jobs)]
        for r in results:
            r.get(timeout=timeout_s, interval=0.001)
        return jobs / (time.perf_counter() - t0)
    finally:
        for p in procs:
            bench.stop(p)


def rq_runs(bench: cm.Bench, *, workers: int, jobs: int, timeout_s: float) -> float:
    from rq import Queue

    bench.flush()
    argv = [
        sys.executable,
        "-m",
        "rq.cli",
        "worker",
        "-u",
        bench.url,
        "-w",
        "rq.worker.SimpleWorker",
        "-q",
    ]
    procs = [bench.spawn(argv, BENCH_PEER_URL=bench.url) for _ in range(workers)]
    conn = redis.Redis.from_url(bench.url)
    try:
        import bench_apps

        q = Queue(connection=conn)
        _rq_wait([q.enqueue(bench_apps.rq_noop)], 30)
        time.sleep(1.0)
        t0 = time.perf_counter()
        jobs_ = [q.enqueue(bench_apps.rq_noop) for _ in range(jobs)]
        _rq_wait(jobs_, timeout_s)
        return jobs / (time.perf_counter() - t0)
    finally:
        conn.close()
        for p in procs:
            bench.stop(p)


def _rq_wait(jobs: list[Any], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    for job in jobs:
        while True:
            status = job.get_status(refresh=True)
            if status == "finished":
                break
            if status == "failed":
                raise RuntimeError(f"rq job failed: {job.exc_info}")
            if time.monotonic() > deadline:
                raise TimeoutError("rq jobs did not finish")
            time.sleep(0.001)


def _peer_module(url: str) -> Any:
    import os

    os.environ["BENCH_PEER_URL"] = url
    import bench_apps

    if getattr(bench_apps, "PEER_URL", None) != url:
        bench_apps = importlib.reload(bench_apps)
    return bench_apps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2000, help="runs per throughput figure")
    ap.add_argument("--steps-jobs", type=int, default=1000, help="runs for the three-step figure")
    ap.add_argument("--submits", type=int, default=5000, help="submissions per submit-rate figure")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds any one figure may take")
    ap.add_argument("--redis", help="use this server (TCP URL) instead of starting one")
    ap.add_argument("--no-peers", action="store_true")
    args = ap.parse_args()

    print(f"nbflow throughput benchmark: {cm.machine()}")
    rows: list[list[Any]] = []
    with cm.Bench(url=args.redis, tcp=True) as bench:
        print(f"server: {bench.url}")
        for w in (1, 2):
            rows.append(
                [
                    "nbflow",
                    "one-step runs/s",
                    w,
                    nbflow_runs(
                        bench, workers=w, jobs=args.jobs, workflow="noop", timeout_s=args.timeout
                    ),
                ]
            )
        for w in (1, 2):
            rows.append(
                [
                    "nbflow",
                    "three-step runs/s",
                    w,
                    nbflow_runs(
                        bench,
                        workers=w,
                        jobs=args.steps_jobs,
                        workflow="three_steps",
                        timeout_s=args.timeout,
                    ),
                ]
            )
        by_value, by_name, batched = submissions(bench, args.submits)
        rows.append(["nbflow", "submissions/s (submit)", 0, by_value])
        rows.append(["nbflow", "submissions/s (submit_many, 500 a call)", 0, batched])
        rows.append(["nbflow", "submissions/s (start by name)", 0, by_name])

        peers: dict[str, dict[int, float]] = {}
        skipped: list[str] = []
        if not args.no_peers:
            for name, fn, module in (
                ("taskiq", taskiq_runs, "taskiq_redis"),
                ("celery", celery_runs, "celery"),
                ("rq", rq_runs, "rq"),
            ):
                try:
                    importlib.import_module(module)
                except ImportError as error:
                    skipped.append(f"{name}: skipped: {error}")
                    continue
                for w in (1, 2):
                    try:
                        rate = fn(bench, workers=w, jobs=args.jobs, timeout_s=args.timeout)
                    except Exception as error:
                        skipped.append(f"{name} x{w}: skipped: {type(error).__name__}: {error}")
                        continue
                    print(f"  {name} x{w}: {rate:,.0f} jobs/s", flush=True)
                    peers.setdefault(name, {})[w] = rate
                    rows.append([name, "one-step jobs/s", w, rate])

    cm.table("Throughput (same server, same run)", ["system", "figure", "workers", "rate"], rows)
    for line in skipped:
        print(line)
    nb = {r[2]: r[3] for r in rows if r[0] == "nbflow" and r[1] == "one-step runs/s"}
    if peers:
        ratio_rows = []
        for w in (1, 2):
            best = max(
                ((rates[w], name) for name, rates in peers.items() if w in rates), default=None
            )
            if best:
                ratio_rows.append(
                    [
                        w,
                        best[1],
                        best[0],
                        nb[w],
                        nb[w] / best[0],
                        "yes" if nb[w] >= 2 * best[0] else "NO",
                    ]
                )
        cm.table(
            "nbflow / best peer (one-step)",
            ["workers", "best peer", "peer/s", "nbflow/s", "ratio", ">=2x"],
            ratio_rows,
        )
    subs = [r[3] for r in rows if r[1].startswith("submissions")]
    print(
        f"\nsubmissions goal (>= 5,000/s on one connection): "
        f"{'met' if min(subs) >= 5000 else 'NOT met'} ({min(subs):,.0f}/s slowest)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
