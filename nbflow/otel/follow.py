"""``nbflow export``: follow a runtime and send every run to an OTLP endpoint when it ends.

It only reads the runtime (the runs index, each run's status and log), so it
runs anywhere and workers never import OpenTelemetry. What it has sent is kept
in Redis under its name, so a restarted exporter goes on where it stopped and
sends no run twice; several exporters with different names (one per backend)
share a runtime without seeing each other. A collector that does not answer is
retried with back-off, and the runs wait for it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nbflow import constants as c
from nbflow._policies import backoff_s

if TYPE_CHECKING:
    from nbflow.otel import OtlpExporter
    from nbflow.runtime.client import Runtime

log = logging.getLogger("nbflow.export")


@dataclass
class ExportOptions:
    """How ``nbflow export`` follows the runtime.

    :param name: names what this exporter has sent (keys under ``nbflow:export:<name>``).
    :param since_s: on a first start, also send the runs that already ended and were
        created this many seconds ago or since (None: none of them, only the runs
        still going and those to come; ``math.inf``: every run the runtime keeps).
    :param interval_s: how often to look for runs that ended.
    """

    name: str = "otel"
    since_s: float | None = None
    interval_s: float = c.EXPORT_INTERVAL_S


class Follower:
    """Sends runs as they end; ``poll`` once, or ``run`` until ``stop`` is set."""

    def __init__(self, runtime: Runtime, exporter: OtlpExporter, options: ExportOptions) -> None:
        self.runtime = runtime
        self.exporter = exporter
        self.options = options
        self._cursor_key = c.EXPORT_CURSOR.format(name=options.name)
        self._done_key = c.EXPORT_DONE.format(name=options.name)
        self._pending: dict[str, float] = {}  # run id -> created_at, runs not yet sent
        self._high: float | None = None  # the newest created_at read from the index
        self._failures = 0

    def run(self, stop: threading.Event) -> None:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        while not stop.is_set():
            try:
                self.poll()
            except (RedisConnectionError, RedisTimeoutError) as error:
                self._failures += 1  # the runtime is away (a restart, a failover): wait for it
                log.warning("runtime %s unreachable (%s); retrying", self.runtime.url, error)
            stop.wait(self._pause_s())

    def poll(self) -> int:
        """Send the runs that ended since the last poll; how many were sent."""
        self._read_new_runs()
        sent = 0
        for run_id in self._ended():
            if not self._send(run_id):
                break  # the collector is down: the rest wait for the next poll
            sent += 1
        self._save_cursor()
        return sent

    # --- which runs --------------------------------------------------------------------
    def _read_new_runs(self) -> None:
        if self._high is None:
            self._first_read()
            return
        self._track(self._index_from(self._high))

    def _first_read(self) -> None:
        saved = self.runtime.redis.get(self._cursor_key)
        if saved is not None:  # a restart: on from the oldest run that was not sent
            self._track(self._index_from(float(saved)))
            return
        # A first start: the runs still going, and those that ended within since_s.
        found = self._index_from(0.0)
        since = self.options.since_s
        sent_from = math.inf if since is None else time.time() - since
        pipe = self.runtime.redis.pipeline(transaction=False)
        for run_id, _ in found:
            pipe.hget(c.run_meta(run_id), "status")
        statuses = pipe.execute()
        wanted = [
            (run_id, created_at)
            for (run_id, created_at), status in zip(found, statuses, strict=True)
            if status is not None
            and (status.decode() not in c.TERMINAL_STATUSES or created_at >= sent_from)
        ]
        self._track(wanted)
        self._high = max((created_at for _, created_at in found), default=0.0)

    def _index_from(self, low: float) -> list[tuple[str, float]]:
        found = self.runtime.redis.zrangebyscore(c.RUNS_INDEX, low, "+inf", withscores=True)
        return [(raw_id.decode(), float(created_at)) for raw_id, created_at in found]

    def _track(self, runs: list[tuple[str, float]]) -> None:
        for run_id, created_at in runs:
            self._pending.setdefault(run_id, created_at)
        self._high = max([self._high or 0.0, *(created_at for _, created_at in runs)])

    def _ended(self) -> list[str]:
        """Pending runs that have ended and were not sent; gone and sent ones are dropped."""
        ids = sorted(self._pending, key=self._pending.__getitem__)
        if not ids:
            return []
        redis = self.runtime.redis
        pipe = redis.pipeline(transaction=False)
        for run_id in ids:
            pipe.hget(c.run_meta(run_id), "status")
        statuses = pipe.execute()
        sent = redis.zmscore(self._done_key, ids)
        ended = []
        for run_id, status, when in zip(ids, statuses, sent, strict=True):
            if status is None or when is not None:
                del self._pending[run_id]  # expired, or sent before a restart
            elif status.decode() in c.TERMINAL_STATUSES:
                ended.append(run_id)
        return ended

    # --- sending -----------------------------------------------------------------------
    def _send(self, run_id: str) -> bool:
        from nbflow.otel import ExportFailed
        from nbflow.runtime.run import Run

        trace = Run(self.runtime, run_id).trace()
        try:
            trace_id = self.exporter.export(trace)
        except ExportFailed as error:
            self._failures += 1
            log.warning("%s; retrying in %.1f s", error, self._pause_s())
            return False
        self._failures = 0
        now = time.time()
        pipe = self.runtime.redis.pipeline(transaction=False)
        pipe.zadd(self._done_key, {run_id: now})
        pipe.zremrangebyscore(self._done_key, "-inf", now - c.RETENTION_S)
        pipe.execute()
        del self._pending[run_id]
        log.info("run %s (%s) sent as trace %s", run_id, trace.status, trace_id)
        return True

    def _save_cursor(self) -> None:
        # A restart reads the index again from the oldest run still waiting to be sent.
        cursor = min(self._pending.values(), default=self._high)
        if cursor is not None:
            self.runtime.redis.set(self._cursor_key, repr(cursor))

    def _pause_s(self) -> float:
        if not self._failures:
            return self.options.interval_s
        return backoff_s(
            self._failures,
            initial_s=2 * self.options.interval_s,
            max_s=c.EXPORT_RETRY_MAX_S,
            jitter=0.0,
            honour_testing=False,
        )
