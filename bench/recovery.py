"""Recovery after kill -9 of a worker, and no robbery of a live worker's blocked run.

1. Two worker processes (default lease settings); a run with a long step is
   started, the worker holding it is killed with SIGKILL, and the time until
   the run restarts on the other worker is measured (kill -> run.restarted,
   kill -> the next run.started).
2. A live worker stuck in a blocking step (time.sleep in a sync component, and
   time.sleep inside an async workflow, which blocks the worker's event loop)
   must keep its run: no run.restarted event, and the run succeeds.

    python bench/recovery.py [--block-s 15] [--redis URL]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

import _common as cm


def kill_and_resume(bench: cm.Bench) -> tuple[float, float, str]:
    import bench_apps

    from nbflow.runtime.client import Runtime

    procs = bench.nbflow_workers(2)
    rt = Runtime(bench.url, secret=cm.SECRET.encode())
    try:
        run = rt.submit(bench_apps.long_step, (3.0,), {})
        holder = None
        for event in run.events():
            if event["type"] == "run.started":
                holder = event["worker"]
                break
        assert holder, "the run never started"
        pid = int(holder.split(":")[1])
        victim = next(p for p in procs if p.pid == pid)
        time.sleep(0.3)
        os.kill(victim.pid, signal.SIGKILL)
        killed = time.time()
        restarted = resumed = None
        for event in run.events():
            if event["ts"] < killed:
                continue
            if event["type"] == "run.restarted" and restarted is None:
                restarted = event["ts"] - killed
            if event["type"] == "run.started" and resumed is None:
                resumed = event["ts"] - killed
        status = run.wait(30)
        return restarted or float("nan"), resumed or float("nan"), status
    finally:
        rt.close()
        for p in procs:
            bench.stop(p)


def not_robbed(bench: cm.Bench, block_s: float) -> list[list[object]]:
    import bench_apps

    from nbflow.runtime.client import Runtime

    bench.flush()
    procs = bench.nbflow_workers(2)
    rt = Runtime(bench.url, secret=cm.SECRET.encode())
    rows: list[list[object]] = []
    try:
        runs = {
            f"sync step time.sleep({block_s:g})": rt.submit(bench_apps.long_step, (block_s,), {}),
            f"async workflow time.sleep({block_s:g})": rt.submit(
                bench_apps.async_blocking, (block_s,), {}
            ),
        }
        t0 = time.monotonic()
        for label, run in runs.items():
            status = run.wait(block_s * 3 + 30)
            events = list(run.events(follow=False))
            restarts = sum(e["type"] == "run.restarted" for e in events)
            starts = sum(e["type"] == "run.started" for e in events)
            rows.append(
                [
                    label,
                    status,
                    starts,
                    restarts,
                    time.monotonic() - t0,
                    "yes" if restarts == 0 and starts == 1 and status == "succeeded" else "NO",
                ]
            )
    finally:
        rt.close()
        for p in procs:
            bench.stop(p)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--block-s", type=float, default=15.0, help="how long the blocking steps sleep")
    ap.add_argument("--redis", help="use this server instead of starting the embedded one")
    args = ap.parse_args()
    from nbflow import constants as c

    print(f"nbflow recovery benchmark: {cm.machine()}")
    print(
        f"defaults: lease {c.LEASE_MS} ms, heartbeat {c.HEARTBEAT_MS} ms, "
        f"sweep {c.SWEEP_INTERVAL_MS} ms"
    )
    with cm.Bench(url=args.redis) as bench:
        restarted, resumed, status = kill_and_resume(bench)
        rows = not_robbed(bench, args.block_s)
    cm.table(
        "Recovery after kill -9 of the worker holding the run (s)",
        ["kill -> run.restarted", "kill -> run.started elsewhere", "final status", "goal < 10 s"],
        [[restarted, resumed, status, "met" if resumed < 10 else "NOT met"]],
    )
    cm.table(
        "Live worker blocked in a long step keeps its run",
        ["run", "status", "run.started", "run.restarted", "done after s", "not robbed"],
        rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
