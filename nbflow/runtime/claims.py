"""Claiming runs: from a work message to a run whose lease this worker holds.

On a standalone server the blocking read of the work stream and the TAKE script
go out in one pipeline: the server runs the script as soon as the read is
served, so a worker wakes up already holding its runs (one round trip, not
two). That read is made by a run thread (``take``), which then starts the run
itself (see runthreads). On Redis Cluster the run's keys live on other slots than
the work stream, so each run is claimed with CLAIM after the read, and the
message acknowledged by separate commands.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Container
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError

from .. import _events as ev
from .. import constants as c
from . import scripts
from .batch import Batch
from .connection import RawConnection, script_command
from .protocol import encode_event

if TYPE_CHECKING:
    from .connection import AsyncRedis, SyncRedis

log = logging.getLogger("nbflow.worker")
CLAIM_BLOCK_MS = 100  # drain must stop reading within this after SIGTERM
Entry = tuple[bytes, dict[bytes, bytes]]  # a work message: id, fields
# The run keys' names with an empty run id; TAKE puts each run's id between the braces.
KEY_TEMPLATES = [c.run_lease(""), c.run_meta(""), c.run_steps(""), c.run_log("")]


@dataclass
class Claim:
    """A run this worker now holds: its metadata and the steps it already recorded."""

    run_id: str
    meta: dict[bytes, bytes]
    steps: dict[bytes, bytes]


class Claimer:
    """Claims runs for worker ``worker_id``, leasing them for ``lease_ms``; runs it
    ``held`` already are not claimed again."""

    def __init__(
        self,
        redis: AsyncRedis,
        sync: SyncRedis,
        *,
        worker_id: str,
        cluster: bool,
        lease_ms: int,
        held: Container[str],
    ) -> None:
        self.redis, self.sync = redis, sync
        self.worker_id, self.cluster, self.lease_ms = worker_id, cluster, lease_ms
        self.held = held
        self._conn: RawConnection | None = None  # the reading thread's own connection

    def take(self, count: int) -> list[Claim]:
        """Standalone, from one thread at a time: wait up to CLAIM_BLOCK_MS for work
        messages, and claim up to ``count`` runs.

        The read's own reply is not even parsed: TAKE finds the messages in the
        pending list. This is the path to a run's first line, so it skips
        redis-py's per-command machinery (see RawConnection).
        """
        if self._conn is None:
            self._conn = RawConnection(self.sync)
        read = ["XREADGROUP", "GROUP", c.WORK_GROUP, self.worker_id, "COUNT", count]
        read += ["BLOCK", CLAIM_BLOCK_MS, "STREAMS", c.WORK_STREAM, ">"]
        keys, args = self._take_args(count)
        replies = self._conn.call(read, script_command(scripts.TAKE, keys, args))
        if isinstance(replies[0], Exception):
            raise replies[0]
        if isinstance(replies[1], NoScriptError):  # the server restarted without it:
            return self._taken(self._conn.script(scripts.TAKE, keys, args))  # read is pending
        if isinstance(replies[1], Exception):
            raise replies[1]
        return self._taken(replies[1])

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    async def read(self, count: int) -> list[Claim]:
        """Redis Cluster: wait up to CLAIM_BLOCK_MS for work messages, and claim up to
        ``count`` runs."""
        reply = await self.redis.xreadgroup(
            c.WORK_GROUP, self.worker_id, {c.WORK_STREAM: ">"}, count=count, block=CLAIM_BLOCK_MS
        )
        entries = [entry for _stream, batch in reply or [] for entry in batch]
        return await self.claim(entries) if entries else []

    async def pending(self, count: int) -> list[Claim]:
        """Claim the runs of work messages already given to this worker (standalone)."""
        keys, args = self._take_args(count)
        sha = await self.redis.script_load(scripts.TAKE)
        return self._taken(await self.redis.evalsha(sha, len(keys), *keys, *args))

    def _take_args(self, count: int) -> tuple[list[Any], list[Any]]:
        """TAKE's keys and arguments."""
        head = encode_event({"type": ev.RUN_STARTED, "worker": self.worker_id, "mode": "runtime"})
        args = [c.WORK_GROUP, self.worker_id, count, self.lease_ms, head[:-1]]
        return [c.WORK_STREAM, c.LEASES], [*args, *KEY_TEMPLATES]

    def _taken(self, reply: list[list[Any]]) -> list[Claim]:
        claims = []
        for item in reply:
            name, code = item[0].decode(errors="replace"), int(item[1])
            if code == 1:
                claims.append(Claim(name, _pairs(item[2]), _pairs(item[3])))
            elif code == -2:
                log.warning("dropped work message %r: it names no valid run", item[0])
        return claims

    async def claim(self, entries: list[Entry]) -> list[Claim]:
        """Claim the runs of these work messages, each with CLAIM (any server)."""
        wanted: list[str] = []
        pipe = Batch(self.redis, cluster=self.cluster)
        for msg_id, fields in entries:
            run_id = (fields.get(b"run") or b"").decode(errors="replace")
            if valid_run_id(run_id) and run_id not in self.held and run_id not in wanted:
                self._claim(pipe, run_id)
                wanted.append(run_id)
            else:
                log.warning("dropping work message %r: %r", msg_id, fields)
            pipe.xack(c.WORK_STREAM, c.WORK_GROUP, msg_id)
            pipe.xdel(c.WORK_STREAM, msg_id)
        replies = await pipe.execute()
        claims = []
        for run_id, (code, meta, steps) in zip(wanted, _script_replies(replies), strict=True):
            if int(code) == 1:
                claims.append(Claim(run_id, _pairs(meta), _pairs(steps)))
            elif int(code) == -1:  # finished: nothing left to lease (0: another worker's)
                await self.redis.zrem(c.LEASES, run_id)
        return claims

    def _claim(self, pipe: Batch, run_id: str) -> None:
        started = ev.make(ev.RUN_STARTED, worker=self.worker_id, mode="runtime")
        head = encode_event(started)[:-1]  # the script adds the workflow and the attempt
        # In the lease index before the lease itself: a crash in between still
        # leaves the sweeper something to look at.
        pipe.zadd(c.LEASES, {run_id: _now_ms() + self.lease_ms})
        keys = [c.run_lease(run_id), c.run_meta(run_id), c.run_steps(run_id), c.run_log(run_id)]
        pipe.eval(scripts.CLAIM, keys, [self.worker_id, self.lease_ms, started["ts"], head])


def valid_run_id(run_id: str) -> bool:
    return bool(run_id) and run_id.isascii() and run_id.isalnum() and len(run_id) <= 64


def _script_replies(replies: list[Any]) -> list[Any]:
    return [r for r in replies if isinstance(r, list)]


def _pairs(flat: list[bytes]) -> dict[bytes, bytes]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _now_ms() -> int:
    return int(time.time() * 1000)
