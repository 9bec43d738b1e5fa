"""The shared reader: many clients of one run cost one Redis read, and none misses or repeats."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import redis.asyncio as aredis

from nbflow import constants as c
from nbflow.api.reader import Hub

RUN = "feedc0ffee000001"


async def _append(client: aredis.Redis, *types: str) -> None:
    for type_ in types:
        await client.xadd(c.run_log(RUN), {"e": json.dumps({"type": type_, "ts": 0.0})})


async def _collect(hub: Hub, after: str = "0", *, pause_s: float = 0.0) -> list[str]:
    ids = []
    async for batch in hub.follow(RUN, after):
        ids += [item.id for item in batch]
        await asyncio.sleep(pause_s)
    return ids


async def _scenario(redis_url: str, *, clients: int, window_events: int, events: int) -> None:
    client = aredis.Redis.from_url(redis_url)
    try:
        await client.hset(c.run_meta(RUN), "status", "running")
        await _append(client, "run.queued")
        hub = Hub(client, block_ms=100, window_events=window_events)
        followers = [
            asyncio.create_task(_collect(hub, pause_s=0.001 * (n % 3))) for n in range(clients)
        ]
        await asyncio.sleep(0.1)
        assert list(hub.feeds) == [RUN] and hub.feeds[RUN].subscribers == clients
        for _ in range(events // 50):
            await _append(client, *["output"] * 50)
            await asyncio.sleep(0.001)
        await _append(client, "run.succeeded", "output")  # nothing after the terminal event is sent
        results = await asyncio.wait_for(asyncio.gather(*followers), 20)
        entries: Any = await client.xrange(c.run_log(RUN))
        log = [entry_id.decode() for entry_id, _ in entries][:-1]
        assert all(ids == log for ids in results)
        late = await _collect(hub, after=log[5])
        assert late == log[6:]
        assert hub.feeds == {}
        await hub.close()
    finally:
        await client.aclose()


def test_many_clients_share_one_feed_and_each_gets_every_event_once(
    redis_url: str, r: object
) -> None:
    asyncio.run(_scenario(redis_url, clients=50, window_events=10_000, events=500))


def test_clients_behind_the_window_read_what_they_missed_from_redis(
    redis_url: str, r: object
) -> None:
    asyncio.run(_scenario(redis_url, clients=5, window_events=20, events=500))


def test_a_run_that_expired_ends_its_stream(redis_url: str, r: object) -> None:
    async def scenario() -> list[str]:
        client = aredis.Redis.from_url(redis_url)
        try:
            await client.hset(c.run_meta(RUN), "status", "running")
            await _append(client, "run.queued")
            hub = Hub(client, block_ms=50)
            follower = asyncio.create_task(_collect(hub))
            await asyncio.sleep(0.1)
            await client.delete(c.run_meta(RUN), c.run_log(RUN))
            return await asyncio.wait_for(follower, 5)
        finally:
            await client.aclose()

    assert len(asyncio.run(scenario())) == 1
