"""End-to-end throughput of nbflow runs against taskiq, Celery and RQ on one server.

Every system runs on the same TCP Valkey node (started here on a loopback port;
Celery and RQ need TCP URLs), one figure at a time, with the server flushed in
between. A figure is jobs submitted back to back on one connection, then waited
on until each one is terminal: rate = jobs / (first submit -> last terminal).
Before the clock starts, each figure's workers are started and warmed with one job.

- one-step, 1 and 2 worker processes: nbflow's no-op workflow (run.queued,
  run.started, run.succeeded all kept in its log); a no-op job for each peer.
- three-step, 1 and 2 worker processes: nbflow's workflow calling three
  components, each recorded as a span with its result committed; for each peer,
  three jobs run one after the other, each one's result stored in its Redis
  result backend, and the client waits on the last one: a taskiq chain (each
  step starts the next), a Celery chain, three RQ jobs chained with depends_on.
- one-step, queued first (nbflow only): --jobs runs queued before one worker
  starts, timed from the first run's start to the last one's end: the worker
  side without the client competing for the CPUs.
- submissions/s on one connection: nbflow's Runtime.submit, submit_many (500 a
  call) and start by name with no worker running (workers 0); and for every
  system its submit loop in the one-step figure, its workers running (submit,
  taskiq kiq, Celery delay, RQ enqueue). Beside them, PINGs/s on one redis-py
  connection: a submit waits for its reply (the run is accepted once it
  returns), so one at a time it can at best match that rate.

Peers: taskiq (RedisStreamBroker + result backend, log level WARNING), Celery
(redis broker and backend, solo pool), RQ (SimpleWorker); see systems.py.

This machine is shared: its noise is about +-30 % and drifts over minutes. So
the figures are interleaved: each round measures every figure for nbflow and for
each peer back to back (the order rotated from round to round), so that figures
compared with each other are taken close in time. Over --rounds R the best
figure of each (system, figure, workers) is kept. Best-of-R is the right
statistic here because noise only ever slows a run down (other work takes CPU
from it, never gives it any), so the fastest round is the closest to what the
system can do; a mean or median would keep part of the noise.

    .venv/bin/python bench/throughput.py [--rounds 1] [--jobs 2000] [--steps-jobs 1000]
        [--submits 5000] [--cost-jobs 500] [--timeout 60] [--redis URL] [--no-peers]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import _common as cm
import redis
import scaling
from servercost import COST_HEADER, Cost, cost_goal_line, cost_rows, measure_cost
from systems import BY_VALUE, Nbflow, System, available_peers, load_apps, running

import nbflow as nf

KINDS = ("one-step", "three-step", BY_VALUE)
FIGURES = [
    ("one-step", 1),
    (BY_VALUE, 1),
    ("one-step", 2),
    ("three-step", 1),
    ("three-step", 2),
]
SUBMIT_MANY = "submit_many, 500 a call"
START_BY_NAME = "start by name"
DRAIN = "one-step, queued first"  # nbflow only: the worker side without the client's submits
ROUND_TRIPS = "PING round trips"  # the ceiling of any call that waits for its reply
SUBMIT_VS_PING = "submit / PING rate"  # in the same round
SUBMIT_BY_VALUE = "submit, by value"
Costs = dict[tuple[str, str], Cost]
GOAL_RATIO = 2.0
GOAL_SUBMITS = 5000


@nf.workflow
def noop_here() -> int:
    """The one-step workflow, defined in this script: it travels by value, as a workflow
    defined in a notebook does (the peers' one-step job is the same for them)."""
    return 1


@dataclass
class Timing:
    """Jobs submitted back to back, then waited on until each one is terminal."""

    jobs: int
    submit_s: float  # first submit -> last submit returned
    total_s: float  # first submit -> last job terminal
    note: str = ""

    @property
    def rate(self) -> float:
        return self.jobs / self.total_s

    @property
    def submit_rate(self) -> float:
        return self.jobs / self.submit_s


# --- measuring -----------------------------------------------------------------------


def measure(
    bench: cm.Bench, system: System, *, kind: str, workers: int, jobs: int, timeout_s: float
) -> Timing:
    """Start the system's workers, warm them, time ``jobs`` jobs of ``kind``, stop them."""
    with running(bench, system, workers):
        return time_jobs(system, kind, jobs, timeout_s)


def time_jobs(system: System, kind: str, jobs: int, timeout_s: float) -> Timing:
    system.wait(system.submit(kind, 1), 30)  # warm: the first job loads code on a worker
    time.sleep(system.settle_s)
    t0 = time.perf_counter()
    handles = system.submit(kind, jobs)
    submitted = time.perf_counter()
    system.wait(handles, timeout_s)
    done = time.perf_counter()
    return Timing(jobs, submitted - t0, done - t0, system.note(handles))


def round_trips(url: str, n: int) -> float:
    """PINGs/s on one connection (redis-py): a submit that waits for its reply can
    at best match it."""
    client = redis.Redis.from_url(url)
    try:
        client.ping()
        t0 = time.perf_counter()
        for _ in range(n):
            client.ping()
        return n / (time.perf_counter() - t0)
    finally:
        client.close()


def nbflow_submissions(bench: cm.Bench, apps: ModuleType, n: int) -> dict[str, float]:
    """nbflow's submissions/s on one connection, no worker running."""
    from nbflow.runtime.client import Runtime

    bench.flush()
    rt = Runtime(bench.url, secret=cm.SECRET.encode())
    try:
        rates = {}
        for measure, wf in (("submit", apps.noop), (SUBMIT_BY_VALUE, noop_here)):
            rt.submit(wf, (), {})
            t0 = time.perf_counter()
            for _ in range(n):
                rt.submit(wf, (), {})
            rates[measure] = n / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for _ in range(n):
            rt.start("noop", {})
        by_name = n / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for start in range(0, n, 500):
            rt.submit_many(apps.noop, [((), {})] * min(500, n - start))
        batched = n / (time.perf_counter() - t0)
        return {**rates, SUBMIT_MANY: batched, START_BY_NAME: by_name}
    finally:
        rt.close()
        bench.flush()


class Results(cm.Rounds):
    """The best figure of each (system, measure, workers) over the rounds, and what failed.

    A measure is a kind of job ("one-step", "three-step") or a way of submitting
    ("submit", "kiq", ...); workers 0 means none were running.
    """

    def __init__(self) -> None:
        super().__init__()
        self.best: dict[tuple[str, str, int], float] = {}

    def keep(self, system: str, measure: str, workers: int, rate: float) -> None:
        key = (system, measure, workers)
        self.best[key] = max(rate, self.best.get(key, 0.0))

    def get(self, system: str, measure: str, workers: int) -> float | None:
        return self.best.get((system, measure, workers))


def run_round(
    bench: cm.Bench, systems: list[System], index: int, args: argparse.Namespace, results: Results
) -> None:
    """Every figure, each measured for nbflow and every peer back to back."""
    results.next_round(args.rounds)
    pings = round_trips(bench.url, args.submits)
    results.keep("redis", ROUND_TRIPS, 0, pings)
    rates = nbflow_submissions(bench, systems[0].apps, args.submits)  # nbflow comes first
    for measure, rate in rates.items():
        results.keep("nbflow", measure, 0, rate)
    results.keep("nbflow", SUBMIT_VS_PING, 0, rates["submit"] / pings)
    listed = "; ".join(f"{measure} {rate:,.0f}/s" for measure, rate in rates.items())
    print(f"  {'submissions':<13} nbflow  {listed}  ({args.submits} each, no worker)", flush=True)
    print(f"  {'round trips':<13} redis   PING {pings:,.0f}/s on one connection", flush=True)
    try:
        bench.flush()
        drain, _cpu = scaling.drain(bench.url, bench, systems[0].apps, args.jobs, 1, args.timeout)
    except Exception as error:
        results.fail(f"  {'drain x1':<13} nbflow  failed: {type(error).__name__}: {error}")
    else:
        results.keep("nbflow", DRAIN, 1, drain)
        print(f"  {'drain x1':<13} nbflow  {drain:7,.0f} runs/s  ({args.jobs} queued first)")
    shift = index % len(systems)
    order = systems[shift:] + systems[:shift]
    for kind, workers in FIGURES:
        jobs = args.steps_jobs if kind == "three-step" else args.jobs
        for system in order:
            if kind != BY_VALUE or system.name == "nbflow":
                run_figure(bench, system, kind, workers, jobs, args.timeout, results)


def run_figure(
    bench: cm.Bench,
    system: System,
    kind: str,
    workers: int,
    jobs: int,
    timeout_s: float,
    results: Results,
) -> None:
    figure = f"{kind} x{workers}"
    label = f"  {figure:<13} {system.name:<6}"
    try:
        timing = measure(bench, system, kind=kind, workers=workers, jobs=jobs, timeout_s=timeout_s)
    except Exception as error:
        results.fail(f"{label}  failed: {type(error).__name__}: {error}")
        return
    results.keep(system.name, kind, workers, timing.rate)
    details = f"{jobs} in {timing.total_s:.2f} s"
    if kind == "one-step":
        results.keep(system.name, system.submit_call, workers, timing.submit_rate)
    if kind in ("one-step", BY_VALUE):
        details += f"; {system.submit_call} loop {timing.submit_rate:,.0f}/s"
    if timing.note:
        details += f"; {timing.note}"
    print(f"{label}  {timing.rate:7,.0f} {system.unit(kind)}  ({details})", flush=True)


# --- report --------------------------------------------------------------------------


def throughput_rows(systems: list[System], results: Results) -> list[list[Any]]:
    rows = []
    for system in systems:
        measures = [*KINDS, DRAIN, system.submit_call, SUBMIT_BY_VALUE, SUBMIT_MANY, START_BY_NAME]
        for measure in measures:
            if measure in KINDS:
                figure = f"{measure} {system.unit(measure)}"
            elif measure == DRAIN:
                figure = f"{DRAIN} runs/s"
            else:
                figure = f"submissions/s ({measure})"
            for workers in (0, 1, 2):
                rate = results.get(system.name, measure, workers)
                if rate is not None:
                    rows.append([system.name, figure, workers, rate])
    return rows


def best_peer(
    peers: list[System], results: Results, measure: str, workers: int
) -> tuple[float, str] | None:
    best = None
    for peer in peers:
        rate = results.get(peer.name, measure, workers)
        if rate is not None and (best is None or rate > best[0]):
            best = (rate, peer.name)
    return best


def ratio_rows(peers: list[System], results: Results) -> list[list[Any]]:
    rows = []
    for kind, workers in FIGURES:
        ours = results.get("nbflow", kind, workers)
        # the peers' one-step job is the same whether nbflow's workflow is by value or not
        best = best_peer(peers, results, "one-step" if kind == BY_VALUE else kind, workers)
        if ours is None or best is None:
            continue
        peer_rate, peer_name = best
        ratio = ours / peer_rate
        met = "yes" if ratio >= GOAL_RATIO else "NO"
        rows.append([kind, workers, peer_name, peer_rate, ours, ratio, met])
    return rows


def submissions_lines(peers: list[System], results: Results) -> list[str]:
    parts = []
    for measure in ("submit", SUBMIT_MANY):
        rate = results.get("nbflow", measure, 0)
        if rate is not None:
            met = "met" if rate >= GOAL_SUBMITS else "NOT met"
            parts.append(f"{measure.split(',')[0]} {rate:,.0f}/s {met}")
    lines = [f"submissions goal (>= {GOAL_SUBMITS:,}/s on one connection): " + ", ".join(parts)]
    share = results.get("nbflow", SUBMIT_VS_PING, 0)
    if share is not None:
        lines.append(
            f"  submit one at a time runs at up to {share:.2f}x the PING rate of a connection"
            " in the same round, the ceiling of any call that waits for its reply"
        )
    best = None
    for peer in peers:
        for workers in (1, 2):
            rate = results.get(peer.name, peer.submit_call, workers)
            if rate is not None and (best is None or rate > best[0]):
                best = (rate, f"{peer.name} {peer.submit_call}", workers)
    if best is not None:
        rate, call, workers = best
        ours = results.get("nbflow", "submit", workers)
        alongside = "-" if ours is None else f"{ours:,.0f}/s"
        running = f"{workers} worker{'s' if workers > 1 else ''} running"
        lines.append(
            f"  best peer enqueue: {call} {rate:,.0f}/s with {running}"
            f" (nbflow submit likewise: {alongside})"
        )
    return lines


def report(systems: list[System], results: Results) -> None:
    cm.table(
        "Throughput (same server, same run; best of the rounds)",
        ["system", "figure", "workers", "rate"],
        throughput_rows(systems, results),
    )
    for line in results.failures:
        print(line)
    peers = systems[1:]
    if peers:
        cm.table(
            "nbflow / best peer",
            ["figure", "workers", "best peer", "peer/s", "nbflow/s", "ratio", ">=2x"],
            ratio_rows(peers, results),
        )
    print()
    for line in submissions_lines(peers, results):
        print(line)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=1, help="rounds; the best of them is kept")
    ap.add_argument("--jobs", type=int, default=2000, help="jobs per one-step figure")
    ap.add_argument("--steps-jobs", type=int, default=1000, help="jobs per three-step figure")
    ap.add_argument("--submits", type=int, default=5000, help="submissions per submit-rate figure")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds any one figure may take")
    ap.add_argument("--redis", help="use this server (TCP URL) instead of starting one")
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--cost-jobs", type=int, default=500, help="jobs per cost figure; 0: none")
    args = ap.parse_args()

    print(f"nbflow throughput benchmark: {cm.machine()}")
    results = Results()
    with cm.Bench(url=args.redis, tcp=True) as bench:
        print(f"server: {bench.url}")
        apps = load_apps(bench.url)
        systems: list[System] = [Nbflow(apps, by_value=noop_here)]
        if not args.no_peers:
            systems += available_peers(apps, results.fail)
        for index in range(args.rounds):
            run_round(bench, systems, index, args, results)
        costs = {} if args.cost_jobs <= 0 else measure_costs(bench, systems, args)
    if results.best:  # (--rounds 0: the server's cost alone)
        report(systems, results)
    report_costs(costs, args.cost_jobs)
    return 0


def measure_costs(bench: cm.Bench, systems: list[System], args: argparse.Namespace) -> Costs:
    """Each system's cost to the server per job, one-step and three-step, one worker."""
    print(f"server cost per job, {args.cost_jobs} jobs each, 1 worker", flush=True)
    costs: Costs = {}
    for kind in ("one-step", "three-step"):
        for system in systems:
            label = f"  {kind:<10} {system.name:<6}"
            try:
                cost = measure_cost(bench, system, kind, args.cost_jobs, args.timeout)
            except Exception as error:
                print(f"{label}  failed: {type(error).__name__}: {error}", flush=True)
                continue
            costs[(system.name, kind)] = cost
            print(f"{label}  {cost.round_trips:.2f} round trips, {cost.commands:.1f} commands")
    return costs


def report_costs(costs: Costs, jobs: int) -> None:
    if not costs:
        return
    cm.table(
        f"Server cost per job ({jobs} jobs, 1 worker; INFO stats)", COST_HEADER, cost_rows(costs)
    )
    line = cost_goal_line(costs)
    if line:
        print(f"\n{line}")


if __name__ == "__main__":
    sys.exit(main())
