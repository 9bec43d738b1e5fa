"""How an attempt ends: its run finished, waiting, or handed back to the queue.

Each is one fenced script sent behind the attempt's pending events (see
writer.py), so the last events of an attempt and its end are written together,
or, if the attempt lost its run meanwhile, not at all.
"""

from __future__ import annotations

import logging
from typing import Any

from .. import _events as ev
from .. import constants as c
from ..errors import RunCancelled, Suspend
from .attempt import Active
from .connection import AsyncRedis
from .ending import ending
from .protocol import dumps, encode_event
from .wakeups import Waker
from .writer import EventWriter, RedisSink

log = logging.getLogger("nbflow.worker")


class Outcomes:
    def __init__(
        self,
        *,
        writer: EventWriter,
        waker: Waker,
        redis: AsyncRedis,
        secret: bytes,
        worker_id: str,
        cluster: bool,
        retention_s: int,
    ) -> None:
        self._writer = writer
        self._waker = waker
        self._redis = redis
        self._secret = secret
        self._worker_id = worker_id
        self._cluster = cluster
        self._retention_s = retention_s

    async def finish(
        self,
        active: Active,
        status: str,
        *,
        value: Any = None,
        error: BaseException | None = None,
        reason: str | None = None,
        redact: tuple[str, ...] = (),
    ) -> None:
        """Record the run's end; a parent waiting on it looks at its children at once."""
        sink = active.context.sink
        event, fields = ending(
            active.run_id,
            status,
            value=value,
            error=error,
            reason=reason,
            redact=redact,
            progress=sink.progress if isinstance(sink, RedisSink) else {},
            secret=self._secret,
        )
        args = [status, encode_event(event), self._retention_s, active.run_id]
        for key, val in fields.items():
            args.extend((key, val))
        if not await self._writer.call(active.run_id, active.token, "finish", args):
            log.warning("run %s: attempt %s lost the run before its end", *active.names)
        elif active.parent_id:
            try:
                await self._waker.wake(active.parent_id)
            except Exception as problem:  # the sweepers look again soon
                log.info("run %s: could not wake its parent: %s", active.run_id, problem)

    async def suspend(self, active: Active, wait: Suspend) -> None:
        """End the attempt at a wait: the run waits, holding no worker."""
        wake_ms = "" if wait.wake_at_s is None else int(wait.wake_at_s * 1000)
        event = encode_event(ev.make(ev.RUN_WAITING, wait=wait.wait))
        args = [dumps(wait.wait), wait.step, event, active.run_id, wake_ms]
        reply = int(await self._writer.call(active.run_id, active.token, "suspend", args))
        if reply == 0:
            log.warning("run %s: attempt %s lost the run at its wait", *active.names)
            return
        if reply == -1:  # asked to cancel before it got there: it ends instead of waiting
            cancelled = RunCancelled(f"run {active.run_id} was cancelled")
            await self.finish(active, "cancelled", error=cancelled, reason="cancelled")
            return
        if self._cluster:  # the indexes live on other slots
            await self._redis.zrem(c.LEASES, active.run_id)
            if wake_ms != "":
                await self._redis.zadd(c.WAKEUPS, {active.run_id: wake_ms})
        if wait.wait["kind"] == "children":  # they may all have ended already
            await self._waker.wake(active.run_id)

    async def hand_back(self, active: Active, reason: str) -> bool:
        """Put the run back on the queue, for another attempt to resume."""
        event = encode_event(ev.make(ev.RUN_RESTARTED, reason=reason, worker=self._worker_id))
        if not await self._writer.call(
            active.run_id, active.token, "requeue", [event, active.run_id]
        ):
            return False
        if self._cluster:  # on a standalone server the script did both
            await self._redis.xadd(c.WORK_STREAM, {"run": active.run_id})
            await self._redis.zrem(c.LEASES, active.run_id)
        return True
