"""Finding runs whose worker died, and putting them back to work.

Every worker runs a sweeper; a per-run lock with a time-out keeps two sweepers
from handling the same run, and a crashed sweeper's lock simply expires.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Container
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import _events as ev
from .. import constants as c
from . import scripts
from .doctor import dead_consumers
from .protocol import encode_event

if TYPE_CHECKING:
    from .claims import Claim, Claimer
    from .connection import AsyncRedis
    from .options import WorkerOptions

log = logging.getLogger("nbflow.worker")
SWEEP_BATCH = 100
RECLAIM_BATCH = 10


@dataclass
class Sweeper:
    """One worker's sweeper, told what it needs of the worker: its id and options, the
    runs it executes (``held``), how many more it has room for (``room``, 0 while it
    drains), whether it drains, how it ``start``s runs the sweeper reclaimed for it
    (through its ``claimer``), and its waiting runs' ``wake_due``."""

    redis: AsyncRedis
    worker_id: str
    cluster: bool
    options: WorkerOptions
    held: Container[str]
    room: Callable[[], int]
    draining: Callable[[], bool]
    claimer: Claimer
    start: Callable[[list[Claim]], None]
    wake_due: Callable[[], Awaitable[Any]]
    _sweep: Any = field(init=False)
    _unindex: Any = field(init=False)

    def __post_init__(self) -> None:
        self._sweep = self.redis.register_script(scripts.SWEEP)
        self._unindex = self.redis.register_script(scripts.UNINDEX_EXPIRED)

    async def run(self) -> None:
        interval_s = self.options.sweep_interval_ms / 1000
        # A cancelled Redis call can surface as a plain error, so the loop also
        # checks the drain flag rather than relying on cancellation alone.
        while not self.draining():
            await asyncio.sleep(interval_s)
            try:
                await self.sweep_once()
            except Exception as error:
                log.warning("sweep failed: %s", error)

    async def sweep_once(self) -> dict[str, int]:
        redis = self.redis
        now_ms = int(time.time() * 1000)
        expired = await redis.zrangebyscore(c.LEASES, "-inf", now_ms, start=0, num=SWEEP_BATCH)
        verdicts: dict[str, int] = {}
        for raw in expired:
            run_id = raw.decode()
            if run_id in self.held:
                continue
            verdict = await self._sweep_run(run_id)
            verdicts[verdict] = verdicts.get(verdict, 0) + 1
        await self._reclaim_orphaned_messages()
        await self.wake_due()
        await redis.zremrangebyscore(c.RUNS_INDEX, "-inf", time.time() - self.options.retention_s)
        await redis.zremrangebyscore(c.WORKERS, "-inf", now_ms - c.DEAD_WORKER_MS)
        await self._drop_dead_consumers()
        return verdicts

    async def _drop_dead_consumers(self) -> None:
        # Consumers of workers gone for good leave the group once nothing is pending
        # under their name (a pending message is reclaimed first, see below).
        redis = self.redis
        consumers = await redis.xinfo_consumers(c.WORK_STREAM, c.WORK_GROUP)
        live = {w.decode() for w in await redis.zrange(c.WORKERS, 0, -1)} | {self.worker_id}
        for name, _idle_ms, pending in dead_consumers(consumers, live):
            if not pending:
                await redis.xgroup_delconsumer(c.WORK_STREAM, c.WORK_GROUP, name)

    async def _sweep_run(self, run_id: str) -> str:
        if not await self.redis.set(
            c.run_sweep_lock(run_id), self.worker_id, nx=True, px=c.SWEEP_LOCK_MS
        ):
            return "locked"
        options = self.options
        restarted = ev.make(ev.RUN_RESTARTED, reason="worker_lost", by=self.worker_id)
        failed = ev.make(ev.RUN_FAILED, reason="worker_lost", error_type="WorkerLost")
        keys = [c.run_lease(run_id), c.run_meta(run_id), c.run_log(run_id), c.run_steps(run_id)]
        if not self.cluster:  # the index move and the work message in the same step
            keys += [c.LEASES, c.WORK_STREAM]
        now = time.time()
        args = [
            options.max_restarts,
            encode_event(restarted),
            encode_event(failed),
            options.retention_s,
            repr(now),
            run_id,
        ]
        verdict = await self._sweep(keys=keys, args=args)
        verdict = verdict.decode() if isinstance(verdict, bytes) else str(verdict)
        if verdict in ("requeue", "queued"):
            log.info("run %s lost its worker; back on the queue", run_id)
        elif verdict == "failed":
            log.warning("run %s lost its worker too often; it failed (worker_lost)", run_id)
        if self.cluster and verdict != "alive":
            await self._cluster_moves(run_id, verdict, int(now * 1000))
        return verdict

    async def _cluster_moves(self, run_id: str, verdict: str, now_ms: int) -> None:
        # Cluster: the index and the work stream live on other slots than the run.
        # The index entry goes first, and only if it is still the expired one (a claim
        # in between re-added it with a later deadline); the work message last, so no
        # claim through it can come before the index move.
        redis = self.redis
        await self._unindex(keys=[c.LEASES], args=[run_id, now_ms])
        if verdict in ("requeue", "queued"):
            await redis.xadd(c.WORK_STREAM, {"run": run_id})

    async def _reclaim_orphaned_messages(self) -> None:
        # A worker that died between reading a work message and taking the run's
        # lease leaves the message pending under its name: claim it for ourselves.
        if self.room() <= 0:
            return
        reply = await self.redis.xautoclaim(
            c.WORK_STREAM,
            c.WORK_GROUP,
            self.worker_id,
            min_idle_time=c.RECLAIM_IDLE_MS,
            start_id="0-0",
            count=RECLAIM_BATCH,
            justid=not self.cluster,
        )
        if self.cluster:  # [next id, [(id, fields), ...], deleted ids]
            messages = [(m, f) for m, f in reply[1] if f]
            if messages:
                self.start(await self.claimer.claim(messages))
        elif reply:  # with JUSTID, the claimed ids alone: now this worker's pending ones
            self.start(await self.claimer.pending(RECLAIM_BATCH))
