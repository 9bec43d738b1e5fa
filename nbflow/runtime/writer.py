"""The worker's side of a run's log: buffered, pipelined event writes.

Code on any thread appends events; one asyncio task writes whatever has piled
up in a single pipeline. An idle writer sends each event at once, a busy one
batches naturally while the previous round trip is in flight.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from .. import _events as ev
from .. import constants as c
from .._policies import Backoff
from ..errors import AttemptFenced
from . import codeship, scripts
from .batch import UNREACHABLE, Batch
from .connection import AsyncRawConnection, AsyncRedis, SyncRedis
from .protocol import dumps, fit_event

log = logging.getLogger("nbflow.worker")
MAX_BATCH = 2_000
WRITE_RETRY_INITIAL_S = 0.05  # an unreachable server: the first retry of a batch
WRITE_RETRY_MAX_S = 2.0
CAREFUL_WRITE_S = 5.0  # how long a careful step start waits for its event to be written
USAGE = {
    "gen_ai.usage.input_tokens": "input_tokens",
    "gen_ai.usage.output_tokens": "output_tokens",
}


@dataclass
class _Item:
    """One script call on one run's keys, for one attempt, in log order."""

    run_id: str
    token: str  # the attempt's fencing token: "<attempt>/<worker>"
    script: str  # "append" | "finish" | "suspend" | "requeue"
    args: list[Any]  # append: an event triple; the others: the script's own arguments
    event: ev.Event | None = None  # for token accounting
    done: Future[Any] | asyncio.Future[Any] | None = None  # settled on the writer's loop
    updates: list[Any] = field(default_factory=list)  # metadata (op, field, value) triples


def _keys(run_id: str, script: str, cluster: bool) -> list[str]:
    if script == "append":
        return [c.run_log(run_id), c.run_meta(run_id), c.run_steps(run_id)]
    if script == "finish":
        keys = [c.run_lease(run_id), c.run_meta(run_id), c.run_log(run_id), c.run_steps(run_id)]
        # A finished run leaves the lease index: inside the script on a standalone
        # server, by a command of its own on Cluster (the index is on another slot).
        return keys if cluster else [*keys, c.LEASES]
    if script == "suspend":
        keys = [c.run_lease(run_id), c.run_meta(run_id), c.run_log(run_id), c.run_steps(run_id)]
        return keys if cluster else [*keys, c.LEASES, c.WAKEUPS]
    keys = [c.run_lease(run_id), c.run_meta(run_id), c.run_log(run_id)]
    return keys if cluster else [*keys, c.WORK_STREAM, c.LEASES]


SCRIPTS = {
    "append": scripts.APPEND,
    "finish": scripts.FINISH,
    "suspend": scripts.SUSPEND,
    "requeue": scripts.REQUEUE,
}
CLOSING = ("finish", "suspend")  # scripts that end an attempt, after its pending events
Fenced = Callable[[str, str], None]  # (run_id, token): an attempt the server refused


class EventWriter:
    def __init__(
        self,
        redis: AsyncRedis,
        loop: asyncio.AbstractEventLoop,
        *,
        cluster: bool = False,
        on_fenced: Fenced | None = None,
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
        self._on_fenced = on_fenced
        # Attempts the server refused, as (run id, token): their later writes are dropped
        # unsent. Attempts, not runs: the same worker may claim the run again.
        self.lost: set[tuple[str, str]] = set()

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

    async def call(self, run_id: str, token: str, script: str, args: list[Any]) -> Any:
        """Run a run-state script behind the attempt's pending events (from the loop);
        its reply (0 when the attempt no longer holds the run)."""
        done: asyncio.Future[Any] = self._loop.create_future()
        self.put(_Item(run_id, token, script, args, done=done))
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
                await self._write(self._next_batch())
                self._run_callbacks()

    def _next_batch(self) -> list[_Item]:
        batch = [self._items.popleft() for _ in range(min(len(self._items), MAX_BATCH))]
        if not self.lost:
            return batch
        kept = []
        for item in batch:
            if (item.run_id, item.token) in self.lost:
                _settle(item, 0)  # a refused attempt writes nothing more
            else:
                kept.append(item)
        return kept

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
            await self._write(self._next_batch())

    async def _write(self, batch: list[_Item]) -> None:
        if not batch:
            return
        calls = _calls(batch)
        retry = Backoff(initial_s=WRITE_RETRY_INITIAL_S, max_s=WRITE_RETRY_MAX_S)
        while True:
            try:
                replies, at = await self._send(calls)
                break
            except UNREACHABLE as error:
                # Redis is restarting or unreachable: keep the events and retry.
                delay = retry.next_delay()
                log.warning("event write failed (%s); retrying in %.2f s", error, delay)
                await asyncio.sleep(delay)
        self._settle(calls, [replies[i] for i in at])

    async def _send(self, calls: list[list[_Item]]) -> tuple[list[Any], list[int]]:
        """Send the calls in one round trip: the replies, and where each call's is."""
        batch = Batch(self._redis, cluster=self.cluster, raw=self._raw)
        sent = 0
        at: list[int] = []
        for call in calls:
            last = call[-1]
            appended = call if last.script == "append" else call[:-1]
            events = [arg for item in appended for arg in item.args]
            updates = [u for item in appended for u in _updates(item)]
            counts = [len(appended), len(updates) // 3]
            keys = _keys(last.run_id, last.script, self.cluster)
            if last.script == "append":
                batch.eval(scripts.APPEND, keys, [last.token, *counts, *events, *updates])
            elif last.script == "finish":
                status, *rest = last.args
                head, fields = rest[:3], rest[3:]
                args = [last.token, status, *head, *counts, *events, *updates, *fields]
                batch.eval(scripts.FINISH, keys, args)
            elif last.script == "suspend":
                batch.eval(
                    scripts.SUSPEND, keys, [last.token, *last.args, *counts, *events, *updates]
                )
            else:
                batch.eval(SCRIPTS[last.script], keys, [last.token, *last.args])
            at.append(sent)
            sent += 1
            if last.script in CLOSING and self.cluster:
                batch.zrem(c.LEASES, last.run_id)
                sent += 1
        return await batch.execute(raise_on_error=False), at

    def _settle(self, calls: list[list[_Item]], replies: list[Any]) -> None:
        for call, reply in zip(calls, replies, strict=True):
            first = call[0]
            attempt = (first.run_id, first.token)
            if reply == 0 and attempt not in self.lost:
                self.refuse(*attempt)
                if self._on_fenced is not None:
                    self._on_fenced(first.run_id, first.token)
            for item in call:
                _settle(item, reply)

    def refuse(self, run_id: str, token: str) -> None:
        """Send nothing more for this attempt: it lost its run."""
        self.lost.add((run_id, token))

    def forget(self, run_id: str, token: str) -> None:
        """The attempt has ended: its refusal need not be remembered any longer."""
        self.lost.discard((run_id, token))


def _settle(item: _Item, reply: Any) -> None:
    done = item.done
    if done is None or done.done():
        return
    if isinstance(reply, Exception):
        done.set_exception(reply)
    elif reply == 0 and item.script == "append":
        # A step commit the server refused: the attempt has lost the run.
        done.set_exception(AttemptFenced(f"run {item.run_id}: attempt {item.token} was fenced"))
    else:
        done.set_result(reply)


def _calls(items: list[_Item]) -> list[list[_Item]]:
    """The batch as script calls, one per attempt where it can: an attempt's appends go
    in one call, which its finish joins; another script (requeue) starts a new call.
    A run's own order is kept; runs need none between them."""
    calls: list[list[_Item]] = []
    appending: dict[tuple[str, str], list[_Item]] = {}
    for item in items:
        attempt = (item.run_id, item.token)
        group = appending.pop(attempt, None)
        if item.script in CLOSING and group is not None:
            group.append(item)
        elif item.script != "append":
            calls.append([item])
        elif group is not None:
            group.append(item)
            appending[attempt] = group
        else:
            appending[attempt] = [item]
            calls.append(appending[attempt])
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


def _updates(item: _Item) -> list[Any]:
    """The item's metadata updates, token totals included, as (op, field, value) triples."""
    updates = item.updates
    usage = _usage(item.event) if item.event else {}
    if not usage:
        return updates
    updates = list(updates)
    for name, value in usage.items():
        updates += ["i", name, value]
    updates += ["i", "total_tokens", sum(usage.values()), "i", "llm_calls", 1]
    cost = ((item.event or {}).get("attrs") or {}).get("nbflow.cost_usd")
    if isinstance(cost, int | float):
        updates += ["f", "cost_usd", float(cost)]
    return updates


@dataclass
class RedisSink:
    """An attempt's sink on a worker: events to the run's stream, steps to its memo.

    Every write carries the attempt's token; once the server has refused one, the
    sink writes nothing more (``fenced``).
    """

    writer: EventWriter
    run_id: str
    token: str
    secret: bytes
    max_events: int = c.MAX_LOG_EVENTS
    max_event_bytes: int = c.MAX_EVENT_BYTES
    count: int = 0
    progress: dict[str, str] = field(default_factory=dict)
    # A run whose worker died under it already: each step's start is written before the
    # step runs, so that if it takes this worker down too, the log names the step.
    careful: bool = False

    def __post_init__(self) -> None:
        # Every event says which attempt wrote it: a log shows at a glance that no
        # attempt wrote after a newer one started (see scripts.py on fencing).
        self.attempt = int(self.token.partition("/")[0] or 0)

    @property
    def fenced(self) -> bool:
        return (self.run_id, self.token) in self.writer.lost

    def emit(self, event: ev.Event) -> None:
        self.emit_at(event, "", 0)

    def emit_at(self, event: ev.Event, position: str, index: int) -> None:
        """Append ``event``, recording that ``position`` has logged ``index`` events."""
        if self.fenced or not self._room(event):
            return
        updates: list[Any] = []
        etype = event["type"]
        if etype == ev.PROGRESS:
            self._track_progress(event)
            updates = ["s", "progress", dumps(self.progress)]
        elif etype == ev.SPAN_STARTED:
            updates = ["s", "step", event.get("name", "")]
            if self.careful:
                self._write_now(self._append(event, "", "", updates, Future()))
                return
        self.writer.put(self._append(event, position, str(index) if position else "", updates))

    def _write_now(self, item: _Item) -> None:
        assert isinstance(item.done, Future)
        self.writer.put(item)
        with contextlib.suppress(TimeoutError):  # a slow server: the step goes on anyway
            item.done.result(timeout=CAREFUL_WRITE_S)

    def _append(
        self,
        event: ev.Event,
        step: str,
        blob: bytes | str,
        updates: list[Any],
        done: Future[Any] | None = None,
    ) -> _Item:
        event["run_attempt"] = self.attempt
        encoded = fit_event(event, self.max_event_bytes)
        return _Item(self.run_id, self.token, "append", [encoded, step, blob], event, done, updates)

    def _track_progress(self, event: ev.Event) -> None:
        state = event.get("state", "running")
        if state == "running":
            for step, old in self.progress.items():
                if old == "running":
                    self.progress[step] = "done"
        self.progress[event["step"]] = state

    def record(self, position: str, name: str) -> None:
        if not self.fenced:
            self.writer.put(_Item(self.run_id, self.token, "append", ["", position, name], None))

    def commit_step(self, event: ev.Event, step: str, value: Any) -> Future[None] | None:
        if self.fenced:
            raise AttemptFenced(f"run {self.run_id}: attempt {self.token} was fenced")
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
        self.writer.put(self._append(event, step, blob, [], done))
        return done

    def _room(self, event: ev.Event) -> bool:
        self.count += 1
        if self.count < self.max_events:
            return True
        if self.count == self.max_events:
            marker = ev.make(ev.LOG_TRUNCATED, max_events=self.max_events)
            self.writer.put(self._append(marker, "", "", []))
        return False


class StepMemo:
    """A run's recorded step results and replay positions, read once per attempt."""

    def __init__(self, blobs: dict[bytes, bytes], secret: bytes, run_id: str) -> None:
        self._blobs = {k.decode(): v for k, v in blobs.items()}
        self._secret = secret
        self._run_id = run_id

    def __len__(self) -> int:
        return len(self._blobs)

    def logged(self, position: str) -> int:
        """How many events (emits, progress marks) ``position`` logged in earlier attempts."""
        blob = self._blobs.get(position)
        return int(blob) if blob is not None else 0

    def made(self, position: str) -> str | None:
        """Which call an earlier attempt made at ``position`` (None: none got there)."""
        blob = self._blobs.get(position)
        return blob.decode() if blob is not None else None

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
