"""Submit-to-start and emit-to-reader latency of nbflow against taskiq, Celery, RQ and the floor.

Every system runs on the same TCP Valkey node (started here on a loopback port;
Celery and RQ need TCP URLs), one at a time, with the server flushed in between.

- submit -> job code starts, for nbflow and each peer: one worker process, one
  job at a time with a 5 ms pause between jobs (a quiet system), after 5 warm-up
  jobs. The job returns time.time() at its first line; the figure is that clock
  minus time.time() taken just before the submit call (nbflow submit, taskiq
  kiq, Celery delay, RQ enqueue): same machine, same clock.
- nbflow's event figures, from the same runs, whose log the client follows with
  run.events(): queued -> started, the run.queued event's timestamp (taken by
  the client) to the run.started event's (the server's clock, read by the script
  that claims the run as soon as the worker's blocked read is served: the
  worker has yet to wake up); and submit -> run.started read by the client.
- emit-to-reader (nbflow): a run emits its wall clock every 5 ms; a client
  following run.events() notes when each one arrives.
- raw floor: XADD from one connection to an XREADGROUP BLOCK waiting on another
  (redis-py, separate thread), no worker running: the wake-up delay. Paced like
  the jobs, one XADD after each 5 ms pause (--floor-pause-ms): on a VM a wake-up
  after a longer idle costs more (here 0.11 ms p50 with 2 ms pauses, 0.16 ms
  with 5 ms), so a floor taken at another pace is not the jobs' floor. Measured
  twice: on its own at the start of each round (--floor samples), and one sample
  before each job of every system (after a pause, the job after another), so
  that a job's figure and its floor share the machine's state of the moment:
  this VM's speed drifts by half within a minute. The p50 goal is judged on
  that ratio, nbflow's p50 over the floor sampled between its own jobs, as the
  median over the rounds.
- protocol floor: the same, with the server-side work of a durable run start
  and nothing else: the client's SUBMIT script (metadata, run.queued, runs
  index, work message, in one atomic step) to a blocked XREADGROUP pipelined
  with the TAKE script (lease, attempt, run.started, metadata read back), on
  keys of their own. What any nbflow run start costs before a line of nbflow's
  Python runs on either side; the rest of "submit -> job code starts" is that
  Python (building the request, verifying and unpickling, opening the span).
  Paced like the raw floor.

As in throughput.py, the figures are interleaved: each of --rounds R rounds
measures the floor, then nbflow and each peer back to back (the order rotated
from round to round), each round's figures printed as measured. The lowest p50
and the lowest p99 of each figure over the rounds are kept: noise only ever
slows a job down.

    python bench/latency.py [--rounds 1] [--runs 200] [--emits 500] [--floor 1000]
        [--floor-pause-ms 5] [--timeout 10] [--redis URL] [--no-peers]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from dataclasses import dataclass

import _common as cm
import redis
from systems import (
    CODE_STARTS,
    QUEUED_TO_STARTED,
    STARTED_SEEN,
    Nbflow,
    System,
    available_peers,
    load_apps,
    running,
)

from nbflow.runtime import scripts

FLOOR = "raw floor: XADD -> blocked XREADGROUP wake"
PROTOCOL_FLOOR = "protocol floor: SUBMIT -> XREADGROUP + TAKE"
FLOOR_BESIDE = "raw floor, one sample before each job"
EMIT_TO_READER = "emit-to-reader (nf.emit -> run.events() yields it)"
NBFLOW_FIGURES = [FLOOR_BESIDE, CODE_STARTS, QUEUED_TO_STARTED, STARTED_SEEN, EMIT_TO_READER]
PEER_FIGURES = [FLOOR_BESIDE, CODE_STARTS]
FLOOR_SYSTEM = "redis"  # the floor's row: redis-py against the server itself
PAUSE_S = 0.005  # between jobs: one job at a time on a quiet system
WARM_JOBS = 5
GOAL_FLOOR_RATIO = 2.0
GOAL_P99_MS = 2.0
GOAL_VS_TASKIQ = 0.8  # nbflow's p50 over taskiq's, at most
GOAL_VS_PROTOCOL = 1.3  # nbflow's p50 over the protocol floor's, at most

Samples = dict[str, list[float]]  # figure -> one value (ms) per job


# --- measuring -----------------------------------------------------------------------


def measure(system: System, bench: cm.Bench, args: argparse.Namespace) -> Samples:
    """One worker process: jobs one at a time, then for nbflow emit-to-reader."""
    with running(bench, system, 1):  # (which flushes the server first)
        probe = FloorProbe(bench.url)
        try:
            samples = start_latencies(system, args.runs, args.timeout, probe)
        finally:
            probe.close()
        if isinstance(system, Nbflow):
            samples[EMIT_TO_READER] = emit_to_reader(system, args.emits)
    return samples


def start_latencies(system: System, runs: int, timeout_s: float, probe: FloorProbe) -> Samples:
    """Each job after a pause, and before it (after a pause too) one raw-floor sample."""
    for _ in range(WARM_JOBS):  # the first jobs load code and open connections
        system.start_latency(timeout_s)
    samples: Samples = {FLOOR_BESIDE: []}
    for _ in range(runs):
        samples[FLOOR_BESIDE].append(probe.sample(PAUSE_S))
        time.sleep(PAUSE_S)
        for figure, value in system.start_latency(timeout_s).items():
            samples.setdefault(figure, []).append(value)
    return samples


def emit_to_reader(nbflow: Nbflow, emits: int) -> list[float]:
    gaps = []
    run = nbflow.rt.submit(nbflow.apps.ticker, (emits, PAUSE_S), {})
    for event in run.events(block_ms=1000):
        if event["type"] == "output":
            gaps.append((time.time() - float(event["chunk"])) * 1000)
    return gaps[5:]  # skip the warm-up


class FloorProbe:
    """The raw floor one sample at a time: XADD from one connection to an XREADGROUP
    BLOCK waiting on another (redis-py, its own thread), on a stream of its own."""

    stream, group = "bench:floor", "g"

    def __init__(self, url: str) -> None:
        self.writer = redis.Redis.from_url(url)
        self.reader = redis.Redis.from_url(url)
        self._setup()
        self._ready = threading.Event()  # the reader is about to block
        self._got = threading.Event()
        self._value = float("nan")
        self._stopped = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def sample(self, pause_s: float) -> float:
        """One wake-up (ms), after ``pause_s`` with the reader blocked and idle."""
        self._ready.wait(2)
        self._ready.clear()
        self._got.clear()
        time.sleep(pause_s)  # the reader blocks, then idles as a worker between jobs
        self._send()  # stamped with the time it is sent
        return self._value if self._got.wait(2) else float("nan")

    def close(self) -> None:
        self._stopped = True
        self._send(b"stop")
        self._thread.join(5)
        self._cleanup()
        self.writer.close()
        self.reader.close()

    def _read(self) -> None:
        while not self._stopped:
            self._ready.set()
            stamps = self._receive()
            now = time.perf_counter()
            for sent in stamps:
                if sent != b"stop":
                    self._value = (now - float(sent)) * 1000
                    self._got.set()

    # What is sent and read: one XADD, one blocked XREADGROUP.
    def _setup(self) -> None:
        self.writer.delete(self.stream)
        self.writer.xgroup_create(self.stream, self.group, id="0", mkstream=True)

    def _send(self, stamp: bytes | None = None) -> None:
        self.writer.xadd(self.stream, {"t": stamp or repr(time.perf_counter())})

    def _receive(self) -> list[bytes]:
        reply = self.reader.xreadgroup(self.group, "c", {self.stream: ">"}, count=1, block=1000)
        return [fields[b"t"] for _s, entries in reply or [] for _id, fields in entries]

    def _cleanup(self) -> None:
        self.writer.delete(self.stream)


class ProtocolProbe(FloorProbe):
    """The same measure with the scripts of a run start (see the module's docstring):
    SUBMIT, then the worker's blocked XREADGROUP pipelined with TAKE."""

    ns = "bench:protocol"
    head = '{"type":"run.started","worker":"c","mode":"runtime"'
    signed_args = b"NBF1" + b"h" * 100  # about the size of a signed empty call

    def _setup(self) -> None:
        self.work, self.leases = f"{self.ns}:work", f"{self.ns}:leases"
        self.runs, self.code = f"{self.ns}:runs", f"{self.ns}:code"
        self.templates = [f"{self.ns}:{{}}:{part}" for part in ("lease", "meta", "steps", "log")]
        self.writer.set(self.code, b"x" * 64)
        self.writer.xgroup_create(self.work, self.group, id="0", mkstream=True)
        self.submit = self.writer.register_script(scripts.SUBMIT)
        self.take = self.reader.script_load(scripts.TAKE)
        self.sent = 0

    def _send(self, stamp: bytes | None = None) -> None:
        run, self.sent = f"r{self.sent}", self.sent + 1
        keys = [f"{self.ns}:{{{run}}}:meta", f"{self.ns}:{{{run}}}:log", self.runs, self.work]
        t = repr(time.perf_counter())
        meta = ["run_id", run, "workflow", "started_at", "status", "queued", "created_at", t]
        meta += ["code", "c" * 32, "input", '{"args":[],"kwargs":{}}']
        meta += ["args", self.signed_args, "t", stamp or t]
        queued = '{"type":"run.queued","workflow":"started_at","ts":' + t + "}"
        self.submit(keys=[*keys, self.code], args=[run, t, queued, 60, *meta])

    def _receive(self) -> list[bytes]:
        pipe = self.reader.pipeline(transaction=False)
        pipe.execute_command(
            "XREADGROUP", "GROUP", self.group, "c", "COUNT", 1, "BLOCK", 1000,
            "STREAMS", self.work, ">",
        )  # fmt: skip
        args = [self.group, "c", 1, 60_000, self.head, *self.templates]
        pipe.evalsha(self.take, 2, self.work, self.leases, *args)
        claimed = pipe.execute()[1]
        return [dict(zip(m[::2], m[1::2], strict=True))[b"t"] for _r, _c, m, _s in claimed]

    def _cleanup(self) -> None:
        self.writer.delete(*self.writer.keys(f"{self.ns}:*"))


def floor(probe_class: type[FloorProbe], url: str, n: int, pause_s: float) -> list[float]:
    probe = probe_class(url)
    try:
        return [probe.sample(pause_s) for _ in range(n)]
    finally:
        probe.close()


@dataclass
class Figure:
    n: int  # values in a round
    p50: float
    p99: float


class Results(cm.Rounds):
    """The lowest p50 and p99 of each (system, figure) over the rounds, and what failed."""

    def __init__(self) -> None:
        super().__init__()
        self.best: dict[tuple[str, str], Figure] = {}
        self.ratios: dict[str, list[float]] = {}  # system -> per round, p50 / floor beside

    def keep_ratio(self, system: str, samples: Samples) -> None:
        """This round's p50 of job starts over the p50 of the floor sampled between them."""
        code = [v for v in samples.get(CODE_STARTS, []) if v == v]
        floor = [v for v in samples.get(FLOOR_BESIDE, []) if v == v]
        if code and floor:
            ratio = cm.pct(code, 50) / cm.pct(floor, 50)
            self.ratios.setdefault(system, []).append(ratio)
            print(f"  {system:<6}  p50 / floor beside it: {ratio:.2f}x", flush=True)

    def keep(self, system: str, figure: str, values: list[float]) -> None:
        values = [v for v in values if v == v]  # a run with no start event gives NaN
        if not values:
            self.fail(f"  {system:<6}  {figure}: no values")
            return
        now = Figure(len(values), cm.pct(values, 50), cm.pct(values, 99))
        print(
            f"  {system:<6}  {figure:<52}  p50 {now.p50:6.2f}  p99 {now.p99:6.2f} ms  ({now.n})",
            flush=True,
        )
        before = self.best.get((system, figure))
        if before is not None:
            now = Figure(now.n, min(now.p50, before.p50), min(now.p99, before.p99))
        self.best[(system, figure)] = now

    def get(self, system: str, figure: str) -> Figure | None:
        return self.best.get((system, figure))


def run_round(
    bench: cm.Bench, systems: list[System], index: int, args: argparse.Namespace, results: Results
) -> None:
    """The floor, then every system back to back."""
    results.next_round(args.rounds)
    bench.flush()
    pause_s = args.floor_pause_ms / 1000
    results.keep(FLOOR_SYSTEM, FLOOR, floor(FloorProbe, bench.url, args.floor, pause_s))
    results.keep(FLOOR_SYSTEM, PROTOCOL_FLOOR, floor(ProtocolProbe, bench.url, args.floor, pause_s))
    shift = index % len(systems)
    for system in systems[shift:] + systems[:shift]:
        try:
            samples = measure(system, bench, args)
        except Exception as error:
            results.fail(f"  {system.name:<6}  failed: {type(error).__name__}: {error}")
            continue
        for figure, values in samples.items():
            results.keep(system.name, figure, values)
        results.keep_ratio(system.name, samples)


# --- report --------------------------------------------------------------------------


def latency_rows(systems: list[System], results: Results) -> list[list[object]]:
    rows = []
    keys = [(FLOOR_SYSTEM, FLOOR), (FLOOR_SYSTEM, PROTOCOL_FLOOR)] + [
        (system.name, figure)
        for system in systems
        for figure in (NBFLOW_FIGURES if isinstance(system, Nbflow) else PEER_FIGURES)
    ]
    for system, figure in keys:
        best = results.get(system, figure)
        if best is not None:
            rows.append([system, figure, best.n, best.p50, best.p99])
    return rows


def goal_lines(results: Results) -> list[str]:
    floor = results.get(FLOOR_SYSTEM, FLOOR)
    code = results.get("nbflow", CODE_STARTS)
    events = results.get("nbflow", QUEUED_TO_STARTED)
    ratios = results.ratios.get("nbflow", [])
    if floor is None or code is None or events is None or not ratios:
        return ["goals: not judged, a figure is missing"]
    judged = statistics.median(ratios)
    rounds = ", ".join(f"{r:.2f}x" for r in ratios)
    return [
        f"goal p50 within {GOAL_FLOOR_RATIO:.0f}x floor, judged on nbflow {CODE_STARTS} over the"
        f" raw floor sampled between its jobs (median of the rounds): {judged:.2f}x,"
        f" {met(judged <= GOAL_FLOOR_RATIO)} (rounds: {rounds})",
        f"  best p50s of the rounds: nbflow {code.p50:.2f} ms, raw floor {floor.p50:.2f} ms"
        f" ({code.p50 / floor.p50:.1f}x)",
        f"  event-based {QUEUED_TO_STARTED}: {events.p50:.2f} ms"
        f" ({events.p50 / floor.p50:.1f}x floor)",
        f"goal p99 under {GOAL_P99_MS:.0f} ms, judged on nbflow {CODE_STARTS}:"
        f" {code.p99:.2f} ms, {met(code.p99 < GOAL_P99_MS)}",
        f"  event-based {QUEUED_TO_STARTED}: {events.p99:.2f} ms",
        *protocol_lines(floor, results.get(FLOOR_SYSTEM, PROTOCOL_FLOOR)),
        *relative_goal_lines(code, results),
    ]


def relative_goal_lines(code: Figure, results: Results) -> list[str]:
    """nbflow's p50 against taskiq's and against the protocol floor (lowest of the rounds)."""
    lines = []
    taskiq = results.get("taskiq", CODE_STARTS)
    if taskiq is not None:
        ratio = code.p50 / taskiq.p50
        lines.append(
            f"goal p50 <= {GOAL_VS_TASKIQ}x taskiq's: nbflow {code.p50:.2f} ms / taskiq"
            f" {taskiq.p50:.2f} ms = {ratio:.2f}x, {met(ratio <= GOAL_VS_TASKIQ)}"
        )
    protocol = results.get(FLOOR_SYSTEM, PROTOCOL_FLOOR)
    if protocol is not None:
        ratio = code.p50 / protocol.p50
        lines.append(
            f"goal p50 <= {GOAL_VS_PROTOCOL}x the protocol floor: nbflow {code.p50:.2f} ms /"
            f" {protocol.p50:.2f} ms = {ratio:.2f}x, {met(ratio <= GOAL_VS_PROTOCOL)}"
        )
    return lines


def protocol_lines(floor: Figure, protocol: Figure | None) -> list[str]:
    if protocol is None:
        return []
    return [
        f"{PROTOCOL_FLOOR}: p50 {protocol.p50:.2f} ms, {protocol.p50 / floor.p50:.1f}x the raw"
        " floor measured just before it: the server side of a durable run start alone",
    ]


def peer_lines(peers: list[System], results: Results) -> list[str]:
    ours = results.get("nbflow", CODE_STARTS)
    lines = []
    for peer in peers:
        theirs = results.get(peer.name, CODE_STARTS)
        if ours is not None and theirs is not None:
            own = results.ratios.get(peer.name)
            beside = f"; {peer.name} over its floor {statistics.median(own):.2f}x" if own else ""
            lines.append(
                f"  {peer.name:<6}  nbflow {ours.p50:.2f} ms / {peer.name} {theirs.p50:.2f} ms"
                f" = {ours.p50 / theirs.p50:.2f}{beside}"
            )
    if lines:
        lines.insert(0, f"nbflow p50 / peer p50, {CODE_STARTS} (below 1: nbflow starts sooner)")
    return lines


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def report(systems: list[System], results: Results) -> None:
    cm.table(
        "Latency (ms; same server, same run; lowest p50 and p99 over the rounds)",
        ["system", "figure", "n", "p50", "p99"],
        latency_rows(systems, results),
    )
    for line in results.failures:
        print(line)
    print()
    for line in [*goal_lines(results), *peer_lines(systems[1:], results)]:
        print(line)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=1, help="rounds; the lowest p50/p99 is kept")
    ap.add_argument("--runs", type=int, default=200, help="jobs per system per round")
    ap.add_argument("--emits", type=int, default=500, help="emits per emit-to-reader run")
    ap.add_argument("--floor", type=int, default=1000, help="XADDs per floor figure")
    ap.add_argument(
        "--floor-pause-ms",
        type=float,
        default=PAUSE_S * 1000,
        help="pause before each floor XADD (default: the jobs' pause)",
    )
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds any one job may take")
    ap.add_argument("--redis", help="use this server (TCP URL) instead of starting one")
    ap.add_argument("--no-peers", action="store_true")
    args = ap.parse_args()

    print(f"nbflow latency benchmark: {cm.machine()}")
    results = Results()
    with cm.Bench(url=args.redis, tcp=True) as bench:
        print(f"server: {bench.url}")
        apps = load_apps(bench.url)
        systems: list[System] = [Nbflow(apps)]
        if not args.no_peers:
            systems += available_peers(apps, results.fail)
        for index in range(args.rounds):
            run_round(bench, systems, index, args, results)
    report(systems, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
