"""Following one run: N SSE clients through one API process, against N direct Redis readers.

A producer process appends ``output`` events to one run's stream at a steady
rate, then the terminal event; each event carries the wall-clock ``ts`` at which
it was appended. The same number of clients follow the run in each mode:

- api: SSE clients of ``GET /runs/{id}/events`` on one ``nbflow api`` process
  (uvicorn, one worker), which reads the run once and fans it out;
- direct: ``XREAD BLOCK`` readers on the same Redis, one connection each.

Delivery latency is receive time minus ``ts``, for every (client, event) pair;
delivered events/s counts every pair over the time from the first append to the
last receipt. All clients of a mode run in this process on one asyncio loop, so
both modes share one client process (on a 2-core machine, with the API and
Valkey): a direct reader costs that process a redis-py reply per event, an SSE
client one socket read of a small frame, which is most of why the direct
readers fall behind at 1,000. Everything stays on this machine: the
embedded Valkey on a unix socket (or ``--redis``) and the API on 127.0.0.1.

    python bench/api_stream.py [--clients 100 1000] [--rate 100] [--seconds 5] [--redis URL]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import multiprocessing
import os
import resource
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GOAL_P99_RATIO = 2.0  # the API's p99 within 2x of direct readers at the largest client count
CONNECT_BATCH = 100
READY_TIMEOUT_S = 60.0
BLOCK_MS = 1_000  # as nbflow's own readers; under redis-py's 5 s socket time-out
FINISH_MARGIN_S = 60.0
TERMINAL = "run.succeeded"


@dataclass
class Tally:
    latencies_s: list[float] = field(default_factory=list)
    first_sent: float = float("inf")
    last_receive: float = 0.0

    def record(self, event: dict[str, Any], now: float) -> bool:
        """Count one delivered event; True if it was the terminal one."""
        if event["type"] == "run.queued":
            return False
        self.latencies_s.append(now - event["ts"])
        self.first_sent = min(self.first_sent, event["ts"])
        self.last_receive = max(self.last_receive, now)
        return bool(event["type"] == TERMINAL)


# --- the run ----------------------------------------------------------------
def new_run(url: str) -> str:
    from nbflow import constants as c
    from nbflow.runtime.connection import sync_client

    run_id = secrets.token_hex(8)
    client = sync_client(url)
    now = time.time()
    meta = {"run_id": run_id, "workflow": "bench", "status": "running", "created_at": repr(now)}
    client.hset(c.run_meta(run_id), mapping=meta)
    client.zadd(c.RUNS_INDEX, {run_id: now})
    client.xadd(c.run_log(run_id), {"e": json.dumps({"type": "run.queued", "ts": now})})
    client.close()
    return run_id


def produce(url: str, run_id: str, rate: float, count: int) -> None:
    """Append ``count`` output events at ``rate`` per second, then the terminal event."""
    from nbflow import constants as c
    from nbflow.runtime.connection import sync_client

    client = sync_client(url)
    key = c.run_log(run_id)
    start = time.monotonic()
    for n in range(count):
        delay = start + n / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        event = {"type": "output", "ts": time.time(), "chunk": f"token {n} " + "x" * 40}
        client.xadd(key, {"e": json.dumps(event)})
    client.hset(c.run_meta(run_id), "status", "succeeded")
    client.xadd(key, {"e": json.dumps({"type": TERMINAL, "ts": time.time(), "output": count})})
    client.close()


# --- SSE clients: a minimal HTTP/1.0 reader, so the client side stays cheap -----
class SseClient(asyncio.Protocol):
    def __init__(self, request: bytes, tally: Tally) -> None:
        self.request = request
        self.tally = tally
        self.buffer = b""
        self.in_body = False
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self.buffer += data
        if not self.in_body:
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            if not sep:
                return
            if b" 200 " not in head.split(b"\r\n", 1)[0]:
                self._fail(RuntimeError(head.decode(errors="replace")))
                return
            self.in_body, self.buffer = True, rest
        *frames, self.buffer = self.buffer.split(b"\n\n")
        for frame in frames:
            self._frame(frame, now)

    def _frame(self, frame: bytes, now: float) -> None:
        at = frame.find(b"data: ")
        if at < 0:
            return  # a keep-alive comment
        event = json.loads(frame[at + 6 :])
        if not self.ready.done():
            self.ready.set_result(None)
        if self.tally.record(event, now) and not self.done.done():
            self.done.set_result(None)
            assert self.transport is not None
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionError("the API closed the stream before the terminal event"))

    def _fail(self, error: BaseException) -> None:
        for future in (self.ready, self.done):
            if not future.done():
                future.set_exception(error)


def _same(client: SseClient) -> SseClient:
    return client


async def api_clients(port: int, run_id: str, count: int, tally: Tally) -> list[SseClient]:
    loop = asyncio.get_running_loop()
    request = (
        f"GET /runs/{run_id}/events HTTP/1.0\r\nHost: 127.0.0.1\r\n"
        "Accept: text/event-stream\r\n\r\n"
    ).encode()
    clients: list[SseClient] = []
    for first in range(0, count, CONNECT_BATCH):
        batch = [SseClient(request, tally) for _ in range(min(CONNECT_BATCH, count - first))]
        await asyncio.gather(
            *(loop.create_connection(functools.partial(_same, c), "127.0.0.1", port) for c in batch)
        )
        clients += batch
    await asyncio.wait_for(asyncio.gather(*(c.ready for c in clients)), READY_TIMEOUT_S)
    return clients


# --- direct readers ---------------------------------------------------------------
async def direct_reader(client: Any, key: str, tally: Tally, ready: asyncio.Future[None]) -> None:
    last = "0-0"
    while True:
        reply = await client.xread({key: last}, count=1_000, block=BLOCK_MS)
        now = time.time()
        for entry_id, fields in reply[0][1] if reply else []:
            last = entry_id
            if not ready.done():
                ready.set_result(None)
            if tally.record(json.loads(fields[b"e"]), now):
                return


# --- one measurement --------------------------------------------------------------
@dataclass
class Result:
    mode: str
    clients: int
    expected: int
    delivered: int
    events_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float


async def measure(
    mode: str, clients: int, url: str, port: int, rate: float, seconds: float
) -> Result:
    from nbflow import constants as c
    from nbflow.api.service import api_client

    run_id = new_run(url)
    tally = Tally()
    redis = api_client(url, cluster=False)  # one connection per blocked reader
    if mode == "api":
        sse = await api_clients(port, run_id, clients, tally)
        finished = [c.done for c in sse]
    else:
        readies = [asyncio.get_running_loop().create_future() for _ in range(clients)]
        key = c.run_log(run_id)
        finished = [asyncio.ensure_future(direct_reader(redis, key, tally, r)) for r in readies]
        await asyncio.wait_for(asyncio.gather(*readies), READY_TIMEOUT_S)
    count = int(rate * seconds)
    producer = multiprocessing.get_context("spawn").Process(
        target=produce, args=(url, run_id, rate, count)
    )
    producer.start()
    try:
        await asyncio.wait_for(asyncio.gather(*finished), seconds + FINISH_MARGIN_S)
    finally:
        producer.join(30)
        await redis.aclose()
    return summarise(mode, clients, count + 1, tally)


def summarise(mode: str, clients: int, events: int, tally: Tally) -> Result:
    latencies_ms = sorted(x * 1000 for x in tally.latencies_s)
    p99_index = min(len(latencies_ms) - 1, int(len(latencies_ms) * 0.99))
    return Result(
        mode=mode,
        clients=clients,
        expected=clients * events,
        delivered=len(latencies_ms),
        events_per_s=len(latencies_ms) / (tally.last_receive - tally.first_sent),
        p50_ms=statistics.median(latencies_ms),
        p99_ms=latencies_ms[p99_index],
        max_ms=latencies_ms[-1],
    )


# --- the API process and the server ------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_api(url: str, port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    import httpx

    cmd = [sys.executable, "-m", "nbflow.cli", "api", "--redis", url, "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nbflow api exited:\n{log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise TimeoutError(f"nbflow api did not start:\n{log.read_text()}")


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))


def report(results: list[Result]) -> bool:
    print(
        f"{'clients':>7} {'mode':>6} {'delivered':>17} {'events/s':>10} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"
    )
    for r in results:
        delivered = f"{r.delivered}/{r.expected}"
        print(
            f"{r.clients:>7} {r.mode:>6} {delivered:>17} {r.events_per_s:>10.0f} "
            f"{r.p50_ms:>8.1f} {r.p99_ms:>8.1f} {r.max_ms:>8.1f}"
        )
    by = {(r.mode, r.clients): r for r in results}
    largest = max(r.clients for r in results)
    for n in sorted({r.clients for r in results}):
        api, direct = by[("api", n)], by[("direct", n)]
        print(
            f"{n} clients: api/direct events/s {api.events_per_s / direct.events_per_s:.2f}, "
            f"p99 {api.p99_ms / direct.p99_ms:.2f}x"
        )
    api, direct = by[("api", largest)], by[("direct", largest)]
    complete = all(r.delivered == r.expected for r in results)
    met = complete and api.p99_ms <= GOAL_P99_RATIO * direct.p99_ms
    print(
        f"p99(API) <= {GOAL_P99_RATIO:g}x p99(direct) at {largest} clients: "
        f"{'yes' if met else 'no'} ({api.p99_ms:.1f} ms vs {direct.p99_ms:.1f} ms"
        f"{'' if complete else '; some events were not delivered'})"
    )
    return met


async def run_all(args: argparse.Namespace, url: str, port: int) -> list[Result]:
    results = []
    for clients in args.clients:
        for mode in ("direct", "api"):
            result = await measure(mode, clients, url, port, args.rate, args.seconds)
            print(f"  measured {mode} x {clients}", flush=True)
            results.append(result)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--rate", type=float, default=100.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long the run streams")
    parser.add_argument("--redis", help="Redis URL (default: a fresh embedded server)")
    args = parser.parse_args()
    raise_fd_limit(4 * max(args.clients) + 256)

    home = Path(tempfile.mkdtemp(prefix="nbf-"))
    env = {
        **os.environ,
        "NBFLOW_HOME": str(home),
        "NBFLOW_SECRET": "bench-secret",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("NBFLOW_API_TOKEN", None)
    os.environ.update({"NBFLOW_HOME": str(home), "NBFLOW_SECRET": "bench-secret"})
    from nbflow.runtime import embedded

    url = args.redis or embedded.ensure_server(home)
    port = free_port()
    api = start_api(url, port, env, home / "api.log")
    try:
        print(
            f"{args.rate:g} events/s for {args.seconds:g} s, one run; Redis {url}; "
            f"API 127.0.0.1:{port} (one process); {os.cpu_count()} CPUs"
        )
        met = report(asyncio.run(run_all(args, url, port)))
    finally:
        api.terminate()
        api.wait(15)
        if not args.redis:
            embedded.stop_server(home)
        shutil.rmtree(home, ignore_errors=True)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
