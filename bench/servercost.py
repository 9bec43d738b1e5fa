"""What a run costs the server, from the server's own statistics: machine-independent.

For each system and kind of job: the server flushed and its statistics reset
(CONFIG RESETSTAT) with the system's one worker started and warmed, then
``jobs`` jobs submitted back to back and waited on (as throughput.py does), then
INFO read once. Divided by the number of jobs:

- round trips: requests the server read from its clients (INFO stats
  ``total_reads_processed``; a pipeline or a script is one), the measure of
  waiting on the network that a client and a worker pay;
- commands: every command the server executed (``total_commands_processed``,
  commands inside Lua scripts included), and how many of them were script calls;
- bytes in and out (``total_net_input_bytes``, ``total_net_output_bytes``);
- bytes kept: ``used_memory`` after the jobs ended, over before them, each read once
  the server has nothing lazily freed left to free (what stays
  on the server per finished job until it expires: nbflow keeps every run's whole
  log, metadata and result for its retention).

Everything the system's workers do meanwhile counts too (heartbeats, polls).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import _common as cm
import redis
from systems import System, running

SCRIPT_CALLS = ("cmdstat_eval", "cmdstat_evalsha", "cmdstat_fcall")


@dataclass
class Cost:
    jobs: int
    round_trips: float
    commands: float
    script_calls: float
    bytes_in: float
    bytes_out: float
    bytes_kept: float


def measure_cost(bench: cm.Bench, system: System, kind: str, jobs: int, timeout_s: float) -> Cost:
    """One worker; the server's statistics over ``jobs`` jobs of ``kind``, per job."""
    with running(bench, system, 1):
        system.wait(system.submit(kind, 1), 30)  # warm: code loaded, connections open
        time.sleep(system.settle_s)
        r = redis.Redis.from_url(bench.url)
        try:
            before = settled_memory(r)
            r.config_resetstat()
            system.wait(system.submit(kind, jobs), timeout_s)
            stats, calls = r.info("stats"), r.info("commandstats")
            after = settled_memory(r)
        finally:
            r.close()
    scripts = sum(int(calls.get(name, {}).get("calls", 0)) for name in SCRIPT_CALLS)
    own = 1  # the INFO that read these statistics
    return Cost(
        jobs=jobs,
        round_trips=(int(stats["total_reads_processed"]) - own) / jobs,
        commands=(int(stats["total_commands_processed"]) - own) / jobs,
        script_calls=scripts / jobs,
        bytes_in=int(stats["total_net_input_bytes"]) / jobs,
        bytes_out=int(stats["total_net_output_bytes"]) / jobs,
        bytes_kept=(after - before) / jobs,
    )


def settled_memory(r: redis.Redis, timeout_s: float = 10.0) -> int:
    """``used_memory`` once the server has no lazily freed objects left to free (a flush
    frees in the background on Valkey 8 and later, which would count as negative cost)."""
    deadline = time.monotonic() + timeout_s
    while True:
        info = r.info("memory")
        if not int(info.get("lazyfree_pending_objects", 0)) or time.monotonic() > deadline:
            return int(info["used_memory"])
        time.sleep(0.05)


def cost_rows(costs: dict[tuple[str, str], Cost]) -> list[list[Any]]:
    return [
        [
            name,
            kind,
            c.round_trips,
            c.commands,
            c.script_calls,
            c.bytes_in,
            c.bytes_out,
            c.bytes_kept,
        ]
        for (name, kind), c in costs.items()
    ]


COST_HEADER = ["system", "kind", "round trips", "commands", "scripts", "bytes in", "bytes out"]
COST_HEADER += ["bytes kept"]


def cost_goal_line(costs: dict[tuple[str, str], Cost]) -> str | None:
    ours, peer = costs.get(("nbflow", "one-step")), costs.get(("taskiq", "one-step"))
    if ours is None or peer is None:
        return None
    met = "met" if ours.round_trips <= peer.round_trips else "NOT met"
    return (
        f"round trips per one-step run, goal no more than taskiq's: nbflow {ours.round_trips:.2f},"
        f" taskiq {peer.round_trips:.2f}: {met} (nbflow keeps the whole log:"
        f" {ours.bytes_kept:,.0f} bytes per finished run)"
    )
