"""Lease renewal on its own thread and connection.

Heartbeats must not depend on the run's code yielding: a step blocked in C code
or a sync call inside an async workflow would otherwise starve the event loop
and get its run stolen by a sweeper.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from .. import constants as c
from . import scripts
from .connection import sync_client

if TYPE_CHECKING:
    from .worker import Worker

log = logging.getLogger("nbflow.worker")


class Heartbeat:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="nbflow-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        redis = sync_client(self.worker.url, cluster=self.worker.cluster)
        interval_s = self.worker.options.heartbeat_ms / 1000
        try:
            while not self._stop.is_set():
                try:
                    self.beat(redis)
                except Exception as error:
                    log.warning("heartbeat failed: %s", error)
                self._stop.wait(interval_s)
        finally:
            redis.close()

    def beat(self, redis: Any) -> None:
        worker = self.worker
        held = [a for a in list(worker.active.values()) if a.holds_lease]
        lease_ms = worker.options.lease_ms
        now_ms = int(time.time() * 1000)
        calls = [([c.run_lease(a.run_id), c.run_meta(a.run_id)], [a.token, lease_ms]) for a in held]
        pipe = redis.pipeline(transaction=False)
        if worker.cluster:  # cluster pipelines refuse scripts
            renewed = [redis.eval(scripts.RENEW, 2, *keys, *args) for keys, args in calls]
        else:
            for keys, args in calls:
                pipe.eval(scripts.RENEW, 2, *keys, *args)
        if held:
            # XX: only runs still indexed; a sweeper that requeued one took it out.
            pipe.zadd(c.LEASES, {a.run_id: now_ms + lease_ms for a in held}, xx=True)
        pipe.zadd(c.WORKERS, {worker.id: now_ms})
        replies = pipe.execute()
        if not worker.cluster:
            renewed = replies[: len(held)]
        for active, (owned, cancel) in zip(held, renewed, strict=True):
            if not owned:
                worker.request_cancel(active.run_id, token=active.token, lost=True)
            elif cancel:
                worker.request_cancel(active.run_id, token=active.token)
