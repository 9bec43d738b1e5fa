"""``nbflow doctor``: check a server against the invariants runs rely on, and repair.

Every run that has not ended must be in exactly one place that will move it on:
``queued`` with a work message, ``running`` with an entry in the lease index
(the sweepers look there; an expired lease sends the run back to the queue), or
``waiting`` with a wake-up (a timer or children: an entry in the wake-ups index;
input from a person: the person, who may wait as long as they like).
Ended runs expire: their keys carry a time-to-live. Workers that are gone leave
the consumer group, and no run's log grows past its cap.

Each finding names what is wrong and what ``--repair`` does about it; a repair
only hands the run to the mechanism that moves it on (a work message, an expired
lease entry for the sweepers), so it is safe while workers run.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from .. import constants as c

CAP_SLACK = 10  # a log may pass its cap by its marker and the run's last events


@dataclass
class Finding:
    kind: str  # stranded | orphaned_message | stale_lease | no_ttl | dead_consumer | over_cap
    subject: str  # a run id, a key or a consumer
    detail: str
    repair: str  # what --repair does (or did)
    repaired: bool = False

    def __str__(self) -> str:
        done = "repaired: " if self.repaired else "repair: "
        return f"{self.kind:<16} {self.subject}  {self.detail} ({done}{self.repair})"


class Doctor:
    def __init__(
        self,
        redis: Any,
        *,
        retention_s: int = c.RETENTION_S,
        max_log_events: int = c.MAX_LOG_EVENTS,
    ) -> None:
        self._r = redis
        self._retention_s = retention_s
        self._max_log_events = max_log_events

    def examine(self, *, repair: bool = False) -> list[Finding]:
        findings = [
            *self._runs(),
            *self._lease_index(),
            *self._keys_without_ttl(),
            *self._consumers(),
        ]
        if repair:
            for finding in findings:
                finding.repaired = self._repair(finding)
        return findings

    # --- runs ----------------------------------------------------------------
    def _runs(self) -> list[Finding]:
        run_ids = [r.decode() for r in self._r.zrange(c.RUNS_INDEX, 0, -1)]
        queued_messages = self._runs_with_work_messages()
        leased = {r.decode() for r in self._r.zrange(c.LEASES, 0, -1)}
        timed = {r.decode() for r in self._r.zrange(c.WAKEUPS, 0, -1)}
        findings: list[Finding] = []
        for run_id, meta in zip(run_ids, self._metas(run_ids), strict=True):
            status = meta.get(b"status", b"").decode()
            if status == "waiting" and run_id not in timed and _needs_wakeup(meta):
                findings.append(
                    Finding(
                        "stranded",
                        run_id,
                        "waiting on a timer or children, with no wake-up",
                        "index a wake-up due now",
                    )
                )
            if status == "queued" and run_id not in queued_messages:
                findings.append(
                    Finding(
                        "stranded",
                        run_id,
                        "queued, but no work message names it",
                        "queue a work message",
                    )
                )
            elif status == "running" and run_id not in leased:
                findings.append(
                    Finding(
                        "stranded",
                        run_id,
                        "running, but not in the lease index",
                        "index an expired lease, for the sweepers",
                    )
                )
            elif status in c.TERMINAL_STATUSES:
                findings += self._over_cap(run_id)
        return findings

    def _metas(self, run_ids: list[str]) -> list[dict[bytes, bytes]]:
        pipe = self._r.pipeline(transaction=False)
        for run_id in run_ids:
            pipe.hgetall(c.run_meta(run_id))
        return list(pipe.execute()) if run_ids else []

    def _runs_with_work_messages(self) -> set[str]:
        named = set()
        for _id, fields in self._r.xrange(c.WORK_STREAM, "-", "+"):
            run = fields.get(b"run")
            if run:
                named.add(run.decode(errors="replace"))
        return named

    def _over_cap(self, run_id: str) -> list[Finding]:
        length = int(self._r.xlen(c.run_log(run_id)))
        if length <= self._max_log_events + CAP_SLACK:
            return []
        return [
            Finding(
                "over_cap",
                c.run_log(run_id),
                f"{length} events, cap {self._max_log_events}",
                "trim to the cap, keeping the newest",
            )
        ]

    def _lease_index(self) -> list[Finding]:
        findings = []
        for raw in self._r.zrange(c.LEASES, 0, -1):
            run_id = raw.decode()
            status = self._r.hget(c.run_meta(run_id), "status")
            if status is None or status.decode() in c.TERMINAL_STATUSES:
                what = "ended" if status else "unknown"
                findings.append(
                    Finding(
                        "stale_lease",
                        run_id,
                        f"in the lease index, but the run is {what}",
                        "drop the entry",
                    )
                )
        return findings

    # --- keys and consumers --------------------------------------------------
    def _keys_without_ttl(self) -> list[Finding]:
        findings = []
        for raw in self._r.scan_iter(match=f"{c.PREFIX}:{{*}}:*", count=1000):
            key = raw.decode()
            if self._r.ttl(key) != -1:
                continue
            run_id = key.split("{", 1)[1].split("}", 1)[0]
            status = self._r.hget(c.run_meta(run_id), "status")
            if status is None or status.decode() in c.TERMINAL_STATUSES:
                findings.append(
                    Finding(
                        "no_ttl",
                        key,
                        "belongs to an ended or unknown run but never expires",
                        f"expire in {self._retention_s} s",
                    )
                )
        return findings

    def _consumers(self) -> list[Finding]:
        try:
            consumers = self._r.xinfo_consumers(c.WORK_STREAM, c.WORK_GROUP)
        except Exception:  # no stream or no group yet: no consumers
            return []
        now_ms = time.time() * 1000
        live = {
            w.decode() for w in self._r.zrangebyscore(c.WORKERS, now_ms - c.DEAD_WORKER_MS, "+inf")
        }
        findings = []
        for name, idle_ms, pending in dead_consumers(consumers, live):
            repair = "leave the group" if not pending else "none: a sweeper reclaims its messages"
            findings.append(
                Finding(
                    "dead_consumer",
                    name,
                    f"no heartbeat, idle {idle_ms / 1000:.0f} s, {pending} pending",
                    repair,
                )
            )
        return findings

    # --- repairs ---------------------------------------------------------------
    def _repair(self, finding: Finding) -> bool:
        r, subject = self._r, finding.subject
        if finding.kind == "stranded" and "queued" in finding.detail:
            r.xadd(c.WORK_STREAM, {"run": subject})
        elif finding.kind == "stranded" and "waiting" in finding.detail:
            r.zadd(c.WAKEUPS, {subject: 0}, nx=True)
        elif finding.kind == "stranded":
            r.zadd(c.LEASES, {subject: 0}, nx=True)
        elif finding.kind == "stale_lease":
            r.zrem(c.LEASES, subject)
        elif finding.kind == "no_ttl":
            r.expire(subject, self._retention_s)
        elif finding.kind == "over_cap":
            r.xtrim(subject, maxlen=self._max_log_events)
        elif finding.kind == "dead_consumer" and "leave" in finding.repair:
            r.xgroup_delconsumer(c.WORK_STREAM, c.WORK_GROUP, subject)
        else:
            return False
        return True


def _needs_wakeup(meta: dict[bytes, bytes]) -> bool:
    """A wait that something other than a person ends: a timer, an input's timeout, children."""
    raw = meta.get(b"wait")
    if raw is None:
        return True  # waiting on nothing known: only a wake-up can sort it out
    wait = json.loads(raw)
    return wait.get("kind") != "input" or wait.get("until") is not None


def dead_consumers(consumers: list[dict[str, Any]], live: set[str]) -> list[tuple[str, int, int]]:
    """(name, idle ms, pending) of each consumer of a worker that is gone: no heartbeat
    (not in ``live``) and idle past DEAD_WORKER_MS. XINFO CONSUMERS's replies as given."""
    dead = []
    for consumer in consumers:
        name = consumer["name"]
        name = name.decode() if isinstance(name, bytes) else str(name)
        idle_ms = int(consumer.get("inactive", consumer.get("idle", 0)) or 0)
        if name not in live and idle_ms > c.DEAD_WORKER_MS:
            dead.append((name, idle_ms, int(consumer.get("pending", 0))))
    return dead
