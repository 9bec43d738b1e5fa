"""Lease renewal on its own thread and connection.

Heartbeats must not depend on the run's code yielding: a step blocked in C code
or a sync call inside an async workflow would otherwise starve the event loop
and get its run stolen by a sweeper.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import constants as c
from . import scripts
from .connection import SyncRedis

if TYPE_CHECKING:
    from .attempt import Active


@dataclass
class Heartbeat:
    """Renews the leases of the attempts ``held`` returns, on ``redis`` (a client of its
    own), and marks worker ``worker_id`` alive; ``cancel(run_id, token=, lost=)`` hears
    of a lease lost (``lost``) or a cancel asked for."""

    redis: SyncRedis
    worker_id: str
    cluster: bool
    lease_ms: int
    held: Callable[[], list[Active]]
    cancel: Callable[..., None]

    def beat(self) -> None:
        held = self.held()
        now_ms = int(time.time() * 1000)
        calls = [
            ([c.run_lease(a.run_id), c.run_meta(a.run_id)], [a.token, self.lease_ms]) for a in held
        ]
        pipe = self.redis.pipeline(transaction=False)
        if self.cluster:  # cluster pipelines refuse scripts
            renewed = [self.redis.eval(scripts.RENEW, 2, *keys, *args) for keys, args in calls]
        else:
            for keys, args in calls:
                pipe.eval(scripts.RENEW, 2, *keys, *args)
        if held:
            # XX: only runs still indexed; a sweeper that requeued one took it out.
            pipe.zadd(c.LEASES, {a.run_id: now_ms + self.lease_ms for a in held}, xx=True)
        pipe.zadd(c.WORKERS, {self.worker_id: now_ms})
        replies = pipe.execute()
        if not self.cluster:
            renewed = replies[: len(held)]
        for active, (owned, cancel) in zip(held, renewed, strict=True):
            if not owned:
                self.cancel(active.run_id, token=active.token, lost=True)
            elif cancel:
                self.cancel(active.run_id, token=active.token)
