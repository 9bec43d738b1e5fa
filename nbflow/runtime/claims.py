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
    from .worker import Worker

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
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self._conn: RawConnection | None = None  # the reading thread's own connection

    def take(self, count: int) -> list[Claim]:
        """Standalone, from one thread at a time: wait up to CLAIM_BLOCK_MS for work
        messages, and claim up to ``count`` runs.

        The read's own reply is not even parsed: TAKE finds the messages in the
        pending list. This is the path to a run's first line, so it skips
        redis-py's per-command machinery (see RawConnection).
        """
        if self._conn is None:
            self._conn = RawConnection(self.worker.sync)
        read = ["XREADGROUP", "GROUP", c.WORK_GROUP, self.worker.id, "COUNT", count]
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
        worker = self.worker
        reply = await worker.redis.xreadgroup(
            c.WORK_GROUP, worker.id, {c.WORK_STREAM: ">"}, count=count, block=CLAIM_BLOCK_MS
        )
        entries = [entry for _stream, batch in reply or [] for entry in batch]
        return await self.claim(entries) if entries else []

    async def pending(self, count: int) -> list[Claim]:
        """Claim the runs of work messages already given to this worker (standalone)."""
        keys, args = self._take_args(count)
        sha = await self.worker.redis.script_load(scripts.TAKE)
        return self._taken(await self.worker.redis.evalsha(sha, len(keys), *keys, *args))

    def _take_args(self, count: int) -> tuple[list[Any], list[Any]]:
        """TAKE's keys and arguments."""
        worker = self.worker
        head = encode_event({"type": ev.RUN_STARTED, "worker": worker.id, "mode": "runtime"})
        args = [c.WORK_GROUP, worker.id, count, worker.options.lease_ms, head[:-1]]
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
        worker = self.worker
        wanted: list[str] = []
        pipe = Batch(worker.redis, cluster=worker.cluster)
        for msg_id, fields in entries:
            run_id = (fields.get(b"run") or b"").decode(errors="replace")
            if valid_run_id(run_id) and run_id not in worker.active and run_id not in wanted:
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
                await worker.redis.zrem(c.LEASES, run_id)
        return claims

    def _claim(self, pipe: Batch, run_id: str) -> None:
        worker = self.worker
        started = ev.make(ev.RUN_STARTED, worker=worker.id, mode="runtime")
        head = encode_event(started)[:-1]  # the script adds the workflow and the attempt
        # In the lease index before the lease itself: a crash in between still
        # leaves the sweeper something to look at.
        pipe.zadd(c.LEASES, {run_id: _now_ms() + worker.options.lease_ms})
        keys = [c.run_lease(run_id), c.run_meta(run_id), c.run_steps(run_id), c.run_log(run_id)]
        pipe.eval(scripts.CLAIM, keys, [worker.id, worker.options.lease_ms, started["ts"], head])


def valid_run_id(run_id: str) -> bool:
    return bool(run_id) and run_id.isascii() and run_id.isalnum() and len(run_id) <= 64


def _script_replies(replies: list[Any]) -> list[Any]:
    return [r for r in replies if isinstance(r, list)]


def _pairs(flat: list[bytes]) -> dict[bytes, bytes]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _now_ms() -> int:
    return int(time.time() * 1000)
