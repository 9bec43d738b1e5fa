"""Following run logs from the API: one Redis reader per followed run, fanned out to its clients.

A thousand SSE clients on one run cost one ``XREAD BLOCK``, not a thousand. Each
client still owns its position (the last stream id it was sent): the shared
feed keeps only a window of recent events in memory, and a client behind that
window reads what it missed from Redis itself, so no client depends on the
window for correctness.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, Callable
from functools import cached_property

import redis

from .. import _events as ev
from .. import constants as c
from .._events import StreamId, parse_id
from .._policies import Backoff
from ..runtime.connection import AsyncRedis
from ..runtime.protocol import decode_entry

log = logging.getLogger("nbflow.api")

READ_BATCH = 1_000
BLOCK_MS = 1_000
WINDOW_EVENTS = 10_000  # events a feed keeps for clients that join late or fall behind
# After a failed read the feed waits this long, doubling while reads keep failing.
RETRY_INITIAL_S, RETRY_MAX_S = 0.5, 2.0


class Item:
    """One event as delivered: shared by every client of a feed, so it is encoded once."""

    def __init__(self, event: ev.Event) -> None:
        self.event = event
        self.id: str = event["id"]
        self.position = parse_id(self.id)
        self.type = str(event.get("type", "invalid")).replace("\n", " ").replace("\r", " ")

    @cached_property
    def json(self) -> str:
        return json.dumps(self.event, separators=(",", ":"), default=str)

    @property
    def terminal(self) -> bool:
        return self.type in ev.TERMINAL_EVENTS


def _items(reply: list[list[object]] | None) -> list[Item]:
    if not reply:
        return []
    entries = reply[0][1]
    assert isinstance(entries, list)
    return [Item(decode_entry(entry_id, fields)) for entry_id, fields in entries]


class Feed:
    """The live tail of one run's log, read once for all of its subscribers."""

    def __init__(self, run_id: str, origin: str, *, window_events: int) -> None:
        self.run_id = run_id
        self.key = c.run_log(run_id)
        self.floor = parse_id(origin)  # the window holds every event after this that the feed read
        self.last = origin
        self.window_events = window_events
        self.positions: list[StreamId] = []
        self.items: list[Item] = []
        self.version = 0
        self.ended = False
        self.subscribers = 0
        self.task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    def since(self, position: StreamId) -> list[Item] | None:
        """Items after ``position``, or None when the window no longer reaches back that far."""
        if position < self.floor:
            return None
        start = bisect.bisect_right(self.positions, position)
        return self.items[start : start + READ_BATCH]

    async def changed(self, version: int, timeout_s: float | None) -> bool:
        """Wait until the feed moves past ``version``; False if ``timeout_s`` passed first."""
        if self.version != version:
            return True
        changed = self._changed
        try:
            async with asyncio.timeout(timeout_s):
                await changed.wait()
        except TimeoutError:
            return False
        return True

    async def pump(self, client: AsyncRedis, block_ms: int) -> None:
        retry = Backoff(initial_s=RETRY_INITIAL_S, max_s=RETRY_MAX_S)
        while not self.ended:
            try:
                reply = await client.xread({self.key: self.last}, count=READ_BATCH, block=block_ms)
                items = _items(reply)
                if items:
                    self._publish(items)
                elif await run_over(client, self.run_id, self.last):
                    self._end()
                retry.reset()
            except redis.RedisError as error:
                log.warning("following run %s: %s", self.run_id, error)
                await asyncio.sleep(retry.next_delay())
            except Exception:  # a dead pump would leave its clients waiting for ever
                log.exception("following run %s", self.run_id)
                await asyncio.sleep(retry.next_delay())

    def _publish(self, items: list[Item]) -> None:
        self.positions.extend(item.position for item in items)
        self.items.extend(items)
        self.last = items[-1].id
        self.ended = self.ended or any(item.terminal for item in items)
        if len(self.items) > self.window_events:
            drop = len(self.items) - self.window_events // 2
            self.floor = self.positions[drop - 1]
            del self.positions[:drop], self.items[:drop]
        self._notify()

    def _end(self) -> None:
        self.ended = True
        self._notify()

    def _notify(self) -> None:
        self.version += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()


async def run_over(client: AsyncRedis, run_id: str, last: str) -> bool:
    """A safety net for logs whose terminal event was trimmed, or that expired."""
    status = await client.hget(c.run_meta(run_id), "status")
    if status is None:
        return True
    ended = status.decode() in c.TERMINAL_STATUSES
    return ended and not await client.xread({c.run_log(run_id): last}, count=1)


class Hub:
    """Every feed of one API process; a feed lives while it has subscribers.

    Each feed's blocked read holds a connection for as long as the feed lives:
    one from ``reader()`` (closed with the feed), else from ``client``'s pool.
    """

    def __init__(
        self,
        client: AsyncRedis,
        *,
        reader: Callable[[], AsyncRedis] | None = None,
        block_ms: int = BLOCK_MS,
        window_events: int = WINDOW_EVENTS,
    ) -> None:
        self.redis = client
        self.reader = reader
        self.block_ms = block_ms
        self.window_events = window_events
        self.feeds: dict[str, Feed] = {}
        self._pumps: set[asyncio.Task[None]] = set()  # left feeds' pumps too, until they end
        self._closing: set[asyncio.Future[None]] = set()  # readers being closed

    async def follow(
        self, run_id: str, after: str = "0", *, idle_s: float | None = None
    ) -> AsyncGenerator[list[Item], None]:
        """Batches of the events after ``after`` in order, until the run's terminal one.

        Yields an empty batch after each ``idle_s`` without events, for keep-alives.
        """
        ms, seq = parse_id(after)
        feed = self._join(run_id, f"{ms}-{seq}")
        try:
            async with contextlib.aclosing(self._follow(feed, f"{ms}-{seq}", idle_s)) as batches:
                async for batch in batches:
                    yield batch
        finally:
            self._leave(feed)

    async def _follow(
        self, feed: Feed, last: str, idle_s: float | None
    ) -> AsyncGenerator[list[Item], None]:
        while True:
            version = feed.version
            items = feed.since(parse_id(last))
            if items is None:
                items = _items(await self.redis.xread({feed.key: last}, count=READ_BATCH))
            if items:
                batch = _through_terminal(items)
                last = batch[-1].id
                yield batch
                if batch[-1].terminal:
                    return
            elif feed.ended:
                return
            elif not await feed.changed(version, idle_s):
                yield []

    def _join(self, run_id: str, origin: str) -> Feed:
        feed = self.feeds.get(run_id)
        if feed is None:
            feed = self.feeds[run_id] = Feed(run_id, origin, window_events=self.window_events)
            feed.task = asyncio.create_task(self._pump(feed))
            self._pumps.add(feed.task)
            feed.task.add_done_callback(self._pumps.discard)
        feed.subscribers += 1
        return feed

    async def _pump(self, feed: Feed) -> None:
        reader = self.reader() if self.reader is not None else self.redis
        try:
            await feed.pump(reader, self.block_ms)
        finally:
            if reader is not self.redis:
                # Shielded: a pump is cancelled when its last client leaves, and maybe
                # again at shutdown; a close cut short would leave the socket open.
                closing = asyncio.ensure_future(reader.aclose())
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)
                await asyncio.shield(closing)

    def _leave(self, feed: Feed) -> None:
        feed.subscribers -= 1
        if feed.subscribers > 0:
            return
        if feed.task is not None:
            feed.task.cancel()
        if self.feeds.get(feed.run_id) is feed:
            del self.feeds[feed.run_id]

    async def close(self) -> None:
        """Stop every pump, and wait until each has closed its connection."""
        tasks = list(self._pumps)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.gather(*self._closing, return_exceptions=True)
        self.feeds.clear()


def _through_terminal(items: list[Item]) -> list[Item]:
    for n, item in enumerate(items):
        if item.terminal:
            return items[: n + 1]
    return items


async def wait_until_ended(hub: Hub, run_id: str, *, or_asks: bool = False) -> None:
    """Until the run's terminal event; with ``or_asks``, also until it waits for a person's
    input (which no sync request would see come: that run waits for its answer, not us)."""
    async for batch in hub.follow(run_id):
        if or_asks and batch and _asks_for_input(batch[-1]):
            return


def _asks_for_input(item: Item) -> bool:
    wait = item.event.get("wait") if item.type == ev.RUN_WAITING else None
    return isinstance(wait, dict) and wait.get("kind") == "input"
