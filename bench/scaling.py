"""How far one server carries nbflow: worker-side drain rate with 1, 2 and 4 workers,
the server's CPU share while it drains, against a Redis Cluster of 3 masters.

A figure: ``--jobs`` no-op runs queued with ``submit_many`` before the workers
start, then ``k`` worker processes drain them; runs/s from the first run's start
to the last run's end (run metadata), and the server's CPU time over that
stretch (INFO cpu ``used_cpu_user`` + ``used_cpu_sys``, summed over the nodes of
a cluster) as a share of one core. One server saturates when its share nears
1.0: adding workers then adds nothing. Redis Cluster spreads runs over slots:
each run's keys (metadata, log, steps) live on the slot of its id; the work
stream, the runs index and the lease index each live on one node.

Worker RSS: one worker with concurrency 1,000 holding ``--async-runs`` async runs
that each await ``asyncio.sleep``: its resident memory before and while they wait.

    .venv/bin/python bench/scaling.py [--jobs 4000] [--workers 1,2,4] [--rounds 1]
        [--no-cluster] [--async-runs 1000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import _common as cm
import redis

BATCH = 500


def drain(
    url: str, bench: cm.Bench, apps: ModuleType, n: int, workers: int, timeout_s: float
) -> tuple[float, float]:
    """``n`` no-op runs queued, then drained by ``workers`` workers: (runs/s, server CPU
    share of one core over the drain)."""
    import nbflow as nf
    from nbflow.runtime.client import Runtime

    rt = Runtime(url, secret=cm.SECRET.encode())
    try:
        runs = []
        for start in range(0, n, BATCH):
            runs += rt.submit_many(apps.noop, [((), {})] * min(BATCH, n - start))
        cpu_before = server_cpu_s(url, rt.cluster)
        procs = bench.nbflow_workers(workers, url=url)
        try:
            statuses = nf.wait(runs, timeout_s=timeout_s)
        finally:
            cpu_after = server_cpu_s(url, rt.cluster)
            for proc in procs:
                bench.stop(proc)
        if set(statuses) != {"succeeded"}:
            raise RuntimeError(f"runs ended {sorted(set(statuses))}")
        metas = rt.metas([run.id for run in runs])
        first = min(float(m["started_at"]) for m in metas)
        last = max(float(m["ended_at"]) for m in metas)
        # Over the drain alone: the server is all but idle while the workers start.
        return n / (last - first), (cpu_after - cpu_before) / (last - first)
    finally:
        rt.close()


def server_cpu_s(url: str, cluster: bool) -> float:
    """The server's CPU seconds so far (every master of a cluster, summed)."""
    if cluster:
        from redis.cluster import RedisCluster

        client = RedisCluster.from_url(url)
        try:
            per_node = client.info("cpu", target_nodes=RedisCluster.PRIMARIES)
            return sum(_cpu(info) for info in per_node.values())
        finally:
            client.close()
    plain = redis.Redis.from_url(url)
    try:
        return _cpu(plain.info("cpu"))
    finally:
        plain.close()


def _cpu(info: dict[str, float]) -> float:
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def flush(url: str, cluster: bool) -> None:
    if cluster:
        from redis.cluster import RedisCluster

        client = RedisCluster.from_url(url)
        client.flushall(target_nodes=RedisCluster.PRIMARIES)
        client.close()
    else:
        plain = redis.Redis.from_url(url)
        plain.flushall()
        plain.close()


def async_rss(bench: cm.Bench, apps: ModuleType, n: int, timeout_s: float) -> tuple[int, int]:
    """One worker (concurrency 1,000) before and while ``n`` async runs each wait: RSS KiB."""
    import nbflow as nf
    from nbflow.runtime.client import Runtime

    flush(bench.url, False)
    rt = Runtime(bench.url, secret=cm.SECRET.encode())
    [worker] = bench.nbflow_workers(1, concurrency=1000)
    try:
        idle = rss_kb(worker.pid)
        runs = rt.submit_many(apps.async_sleep, [((3.0,), {})] * n)
        deadline = time.monotonic() + timeout_s
        while rt.redis.zcard("nbflow:leases") < n:  # all of them running at once
            if time.monotonic() > deadline:
                raise TimeoutError("the async runs did not all start")
            time.sleep(0.05)
        busy = rss_kb(worker.pid)
        nf.wait(runs, timeout_s=timeout_s)
        return idle, busy
    finally:
        bench.stop(worker)
        rt.close()


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def start_cluster(home: str) -> object:
    sys.path.insert(0, str(cm.REPO_ROOT))
    from tests.redis_servers import start_cluster as start

    return start(Path(home) / "cluster", masters=3)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=4000)
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--rounds", type=int, default=1, help="rounds; the best of them is kept")
    ap.add_argument("--no-cluster", action="store_true")
    ap.add_argument("--async-runs", type=int, default=1000)
    ap.add_argument("--timeout", type=float, default=120.0)
    args = ap.parse_args()
    counts = [int(k) for k in args.workers.split(",")]
    print(f"nbflow scaling benchmark: {cm.machine()}")
    best: dict[tuple[str, int], tuple[float, float]] = {}
    with cm.Bench(tcp=True) as bench, tempfile.TemporaryDirectory() as home:
        import bench_apps as apps

        cluster = None if args.no_cluster else start_cluster(home)
        servers = [("one server", bench.url, False)]
        if cluster is not None:
            servers.append(("cluster, 3 masters", cluster.url, True))  # type: ignore[attr-defined]
        try:
            for index in range(args.rounds):
                print(f"round {index + 1}/{args.rounds}", flush=True)
                for name, url, is_cluster in servers:
                    for k in counts:
                        flush(url, is_cluster)
                        rate, share = drain(url, bench, apps, args.jobs, k, args.timeout)
                        print(f"  {name:<18} x{k}  {rate:7,.0f} runs/s  server CPU {share:.2f}")
                        kept = best.get((name, k))
                        if kept is None or rate > kept[0]:
                            best[(name, k)] = (rate, share)
            idle, busy = async_rss(bench, apps, args.async_runs, args.timeout)
        finally:
            if cluster is not None:
                cluster.stop()  # type: ignore[attr-defined]
    rows = [[name, k, rate, share] for (name, k), (rate, share) in best.items()]
    cm.table(
        f"Drain of {args.jobs} queued no-op runs (best of the rounds)",
        ["server", "workers", "runs/s", "server CPU (cores)"],
        rows,
    )
    print(
        f"\nworker RSS, concurrency 1,000: {idle / 1024:.0f} MiB idle,"
        f" {busy / 1024:.0f} MiB with {args.async_runs} async runs waiting at once"
        f" ({(busy - idle) / args.async_runs:.1f} KiB per run)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
