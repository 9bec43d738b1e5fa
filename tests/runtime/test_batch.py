"""A raw batch runs scripts by digest; after the server loses them, each runs exactly once."""

from __future__ import annotations

import asyncio
from typing import Any

import redis
import redis.asyncio as aredis

from nbflow.runtime.batch import Batch
from nbflow.runtime.connection import AsyncRawConnection

# Appends its argument to a list named by its key, and returns the list's length.
PUSH = "return redis.call('RPUSH', KEYS[1], ARGV[1])"
COUNT = "return redis.call('LLEN', KEYS[1])"


def _run(url: str, calls: list[tuple[str, str, str]], *, forget: bool) -> tuple[list[Any], int]:
    """Send ``calls`` (script, key, arg) in one raw batch, the server's scripts flushed
    first if ``forget``; the replies and how many script commands the server ran."""

    async def main() -> tuple[list[Any], int]:
        client = aredis.Redis.from_url(url)
        raw = AsyncRawConnection(client)
        try:
            warm = Batch(client, cluster=False, raw=raw)
            for script in (PUSH, COUNT):
                warm.eval(script, ["warm:{w}"], ["x"])
            await warm.execute()
            if forget:
                await client.script_flush()
            await client.config_resetstat()
            batch = Batch(client, cluster=False, raw=raw)
            for script, key, arg in calls:
                batch.eval(script, [key], [arg])
            replies = await batch.execute(raise_on_error=False)
            stats = await client.info("commandstats")
            ran = sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("rpush",))
            return replies, ran
        finally:
            await raw.close()
            await client.aclose()

    return asyncio.run(main())


CALLS = [
    (PUSH, "log:{b}", "b1"),  # by digest: refused by a server that lost its scripts
    (PUSH, "log:{a}", "a1"),
    (PUSH, "log:{a}", "a2"),  # a second command of run a: a's go by their text
    (COUNT, "log:{c}", ""),
]


def test_scripts_run_once_each_in_order_when_the_server_has_them(
    redis_url: str, r: redis.Redis
) -> None:
    replies, ran = _run(redis_url, CALLS, forget=False)
    assert replies == [1, 1, 2, 0]
    assert ran == 3
    assert r.lrange("log:{a}", 0, -1) == [b"a1", b"a2"]


def test_after_the_server_lost_its_scripts_each_runs_once_and_a_runs_order_holds(
    redis_url: str, r: redis.Redis
) -> None:
    replies, ran = _run(redis_url, CALLS, forget=True)
    assert replies == [1, 1, 2, 0]
    assert ran == 3  # none twice: those refused (NOSCRIPT) had not run
    assert r.lrange("log:{a}", 0, -1) == [b"a1", b"a2"]
    assert r.lrange("log:{b}", 0, -1) == [b"b1"]
    assert r.script_exists(*(_sha(s) for s in (PUSH, COUNT))) == [True, True]


def _sha(text: str) -> str:
    import hashlib

    return hashlib.sha1(text.encode()).hexdigest()
