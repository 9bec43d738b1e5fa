"""The worker's side of a run's log: buffered, pipelined event writes.

Code on any thread appends events; one asyncio task writes whatever has piled
up in a single pipeline. An idle writer sends each event at once, a busy one
batches naturally while the previous round trip is in flight.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from .. import _events as ev
from .. import constants as c
from . import codeship, scripts
from .batch import UNREACHABLE, Batch
from .connection import AsyncRawConnection, AsyncRedis, SyncRedis
from .protocol import dumps, encode_event

log = logging.getLogger("nbflow.worker")
MAX_BATCH = 2_000
USAGE = {
    "gen_ai.usage.input_tokens": "input_tokens",
    "gen_ai.usage.output_tokens": "output_tokens",
}


@dataclass
class _Item:
    """One script call on one run's keys, in log order."""

    run_id: str
    script: str  # "append" | "finish" | "requeue"
    args: list[Any]
    event: ev.Event | None = None  # for token accounting
    done: Future[Any] | asyncio.Future[Any] | None = None  # settled on the writer's loop
    meta: dict[str, str] | None = None


KEYS = {
    "append": lambda r: [c.run_log(r), c.run_lease(r), c.run_steps(r)],
    "finish": lambda r: [c.run_lease(r), c.run_meta(r), c.run_log(r), c.run_steps(r)],
    "requeue": lambda r: [c.run_lease(r), c.run_meta(r), c.run_log(r)],
}


class EventWriter:
    def __init__(
        self, redis: AsyncRedis, loop: asyncio.AbstractEventLoop, *, cluster: bool = False
    ) -> None:
        self._redis = redis
        self.cluster = cluster
        self._raw = None if cluster else AsyncRawConnection(redis)  # one batch at a time
        self._loop = loop
        self._items: collections.deque[_Item] = collections.deque()
        self._wake = asyncio.Event()
        self._callbacks: collections.deque[tuple[Callable[..., None], tuple[Any, ...]]] = (
            collections.deque()
        )
        self._idle = False  # True while the writer's task waits for a wake-up
        self._loop_thread = threading.get_ident()  # built on the loop's thread
        self._scripts = {
            "append": scripts.APPEND,
            "finish": scripts.FINISH,
            "requeue": scripts.REQUEUE,
        }
        self.lost: set[str] = set()  # runs whose lease this worker lost

    def put(self, item: _Item) -> None:
        self._items.append(item)
        self._signal()

    def call_soon(self, callback: Callable[..., None], *args: Any) -> None:
        """Run ``callback(*args)`` on the loop soon, from any thread (a run's thread
        handing back its outcome): it shares the writer's wake-ups."""
        self._callbacks.append((callback, args))
        self._signal()

    def _signal(self) -> None:
        # Waking the loop from another thread costs a system call, so only an
        # idle writer is woken: a busy one looks at its queues again before it
        # goes idle (see run), and on the loop's own thread no call is needed.
        if not self._idle:
            return
        self._idle = False
        if threading.get_ident() == self._loop_thread:
            self._wake.set()
        else:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def call(self, run_id: str, script: str, args: list[Any]) -> Any:
        """Run a run-state script behind the run's pending events (from the loop); its reply."""
        done: asyncio.Future[Any] = self._loop.create_future()
        self.put(_Item(run_id, script, args, done=done))
        return await done

    def pending(self) -> int:
        return len(self._items)

    async def run(self) -> None:
        while True:
            # Idle from here: an item put from now on wakes the writer; one put
            # before is seen by this check.
            self._idle = True
            if not self._items and not self._callbacks:
                await self._wake.wait()
            self._wake.clear()
            self._idle = False
            self._run_callbacks()
            while self._items:
                batch = [self._items.popleft() for _ in range(min(len(self._items), MAX_BATCH))]
                await self._write(batch)
                self._run_callbacks()

    def _run_callbacks(self) -> None:
        while self._callbacks:
            callback, args = self._callbacks.popleft()
            try:
                callback(*args)
            except Exception:
                log.exception("callback %r failed", callback)

    async def close(self) -> None:
        if self._raw is not None:
            await self._raw.close()

    async def flush(self) -> None:
        while self._items:
            batch = [self._items.popleft() for _ in range(min(len(self._items), MAX_BATCH))]
            await self._write(batch)

    async def _write(self, batch: list[_Item]) -> None:
        calls = _calls(batch)
        delay = 0.05
        while True:
            try:
                replies, at = await self._send(calls)
                break
            except UNREACHABLE as error:
                # Redis is restarting or unreachable: keep the events and retry.
                log.warning("event write failed (%s); retrying in %.2f s", error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        self._settle(calls, [replies[i] for i in at])

    async def _send(self, calls: list[list[_Item]]) -> tuple[list[Any], list[int]]:
        """Send the calls in one round trip: the replies, and where each call's is."""
        batch = Batch(self._redis, cluster=self.cluster, raw=self._raw)
        sent = 0
        at: list[int] = []
        for call in calls:
            last = call[-1]
            appended = call if last.script == "append" else call[:-1]
            # The appended events' metadata first: a finishing run's final progress
            # must not be overwritten by one of its earlier events'.
            for item in appended:
                sent += _account(batch, item)
            at.append(sent)
            sent += 1
            events = [arg for item in appended for arg in item.args[1:]]
            if last.script == "append":
                batch.eval(scripts.APPEND, KEYS["append"](last.run_id), [last.args[0], *events])
                continue
            keys = KEYS[last.script](last.run_id)
            args = last.args
            if last.script == "finish":
                args = [*args[:5], len(appended), *events, *args[5:]]
                # A finished run leaves the lease index: inside the script on a standalone
                # server, by a command of its own on Cluster (the index is on another slot).
                if not self.cluster:
                    keys.append(c.LEASES)
            batch.eval(self._scripts[last.script], keys, args)
            sent += _account(batch, last)
            if last.script == "finish" and self.cluster:
                batch.zrem(c.LEASES, last.run_id)
                sent += 1
        return await batch.execute(raise_on_error=False), at

    def _settle(self, calls: list[list[_Item]], replies: list[Any]) -> None:
        for call, reply in zip(calls, replies, strict=True):
            if call[0].script == "append" and reply == 0:
                self.lost.add(call[0].run_id)
            for item in call:
                if item.done is not None and not item.done.done():
                    if isinstance(reply, Exception):
                        item.done.set_exception(reply)
                    else:
                        item.done.set_result(reply)


def _calls(items: list[_Item]) -> list[list[_Item]]:
    """The batch as script calls, one per run where it can: a run's appends go in one
    call, which its finish joins; another script (requeue) starts a new call. A
    run's own order is kept; runs need none between them."""
    calls: list[list[_Item]] = []
    appending: dict[str, list[_Item]] = {}
    for item in items:
        group = appending.pop(item.run_id, None)
        if item.script == "finish" and group is not None:
            group.append(item)
        elif item.script != "append":
            calls.append([item])
        elif group is not None:
            group.append(item)
            appending[item.run_id] = group
        else:
            appending[item.run_id] = [item]
            calls.append(appending[item.run_id])
    return calls


def _usage(event: ev.Event) -> dict[str, int]:
    if event.get("type") != ev.SPAN_FINISHED or event.get("cached"):
        return {}
    attrs = event.get("attrs") or {}
    return {
        name: int(attrs[key])
        for key, name in USAGE.items()
        if isinstance(attrs.get(key), int | float)
    }


def _account(pipe: Any, item: _Item) -> int:
    """Keep token totals and progress in the run's metadata; how many commands it sent."""
    meta = c.run_meta(item.run_id)
    sent = 0
    if item.meta:
        pipe.hset(meta, mapping=item.meta)
        sent += 1
    usage = _usage(item.event) if item.event else {}
    if not usage:
        return sent
    for name, value in usage.items():
        pipe.hincrby(meta, name, value)
    pipe.hincrby(meta, "total_tokens", sum(usage.values()))
    pipe.hincrby(meta, "llm_calls", 1)
    sent += len(usage) + 2
    cost = ((item.event or {}).get("attrs") or {}).get("nbflow.cost_usd")
    if isinstance(cost, int | float):
        pipe.hincrbyfloat(meta, "cost_usd", float(cost))
        sent += 1
    return sent


@dataclass
class RedisSink:
    """A run's sink on a worker: events to the run's stream, steps to its memo."""

    writer: EventWriter
    run_id: str
    worker: str
    secret: bytes
    max_events: int = c.MAX_LOG_EVENTS
    count: int = 0
    progress: dict[str, str] = field(default_factory=dict)

    def emit(self, event: ev.Event) -> None:
        if not self._room(event):
            return
        meta = None
        if event["type"] == ev.PROGRESS:
            self._track_progress(event)
            meta = {"progress": dumps(self.progress)}
        self.writer.put(self._append(event, meta=meta))

    def _append(self, event: ev.Event, step: str = "", blob: bytes = b"", **fields: Any) -> _Item:
        return _Item(
            self.run_id, "append", [self.worker, encode_event(event), step, blob], event, **fields
        )

    def _track_progress(self, event: ev.Event) -> None:
        state = event.get("state", "running")
        if state == "running":
            for step, old in self.progress.items():
                if old == "running":
                    self.progress[step] = "done"
        self.progress[event["step"]] = state

    def commit_step(self, event: ev.Event, step: str, value: Any) -> Future[None] | None:
        try:
            blob = codeship.pack(value, self.secret, codeship.step_for(self.run_id, step))
        except Exception as error:  # an unpicklable result still finishes the step
            log.warning(
                "step %s result cannot be recorded (%s); it will re-run after a restart",
                step,
                error,
            )
            self.emit(event)
            return None
        done: Future[None] = Future()
        self.count += 1
        self.writer.put(self._append(event, step, blob, done=done))
        return done

    def _room(self, event: ev.Event) -> bool:
        self.count += 1
        if self.count < self.max_events:
            return True
        if self.count == self.max_events:
            marker = ev.make(ev.LOG_TRUNCATED, max_events=self.max_events)
            self.writer.put(self._append(marker))
        return False


class StepMemo:
    """A run's recorded step results, read once when the run (re)starts."""

    def __init__(self, blobs: dict[bytes, bytes], secret: bytes, run_id: str) -> None:
        self._blobs = {k.decode(): v for k, v in blobs.items()}
        self._secret = secret
        self._run_id = run_id

    def __len__(self) -> int:
        return len(self._blobs)

    def lookup(self, step: str) -> tuple[bool, Any]:
        blob = self._blobs.get(step)
        if blob is None:
            return False, None
        return True, codeship.unpack(blob, self._secret, codeship.step_for(self._run_id, step))


class RedisCache:
    """Component caches shared by every worker of the runtime."""

    def __init__(self, redis: SyncRedis, secret: bytes) -> None:
        self._redis = redis
        self._secret = secret

    def get(self, key: str) -> tuple[bool, Any]:
        blob = self._redis.get(c.CACHE_KEY.format(key=key))
        if blob is None:
            return False, None
        return True, codeship.unpack(blob, self._secret, codeship.cache_for(key))

    def set(self, key: str, value: Any, ttl_s: float | None) -> None:
        blob = codeship.pack(value, self._secret, codeship.cache_for(key))
        px = None if ttl_s is None else max(1, int(ttl_s * 1000))
        self._redis.set(c.CACHE_KEY.format(key=key), blob, px=px)
