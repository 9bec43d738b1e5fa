"""Redis clients for one URL: standalone or Cluster, sync or asyncio."""

from __future__ import annotations

import asyncio
import functools
import hashlib
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, urlparse

import hiredis
import redis
import redis.asyncio as aredis
from redis.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from ..errors import RuntimeUnavailable

SyncRedis = Any  # redis.Redis | RedisCluster: the commands nbflow uses exist on both
AsyncRedis = Any


def is_cluster(url: str) -> bool:
    """True for ``?cluster=1`` URLs, or when the server says cluster mode is on."""
    query = parse_qs(urlparse(url).query)
    if "cluster" in query:
        return query["cluster"][0].lower() in ("1", "true", "yes")
    if url.startswith("unix://"):
        return False
    probe = redis.Redis.from_url(_strip_cluster(url), socket_connect_timeout=5)
    try:
        return bool(probe.info("cluster").get("cluster_enabled"))
    except redis.RedisError as error:
        raise RuntimeUnavailable(f"cannot reach Redis at {url}: {error}") from error
    finally:
        probe.close()


def _strip_cluster(url: str) -> str:
    if "cluster=" not in url:
        return url  # geturl() would turn unix:///path into unix:/path
    parsed = urlparse(url)
    query = "&".join(
        part for part in parsed.query.split("&") if part and not part.startswith("cluster=")
    )
    return parsed._replace(query=query).geturl()


def sync_client(url: str, *, cluster: bool | None = None, **options: Any) -> SyncRedis:
    """``options`` go to redis-py (standalone servers)."""
    cluster = is_cluster(url) if cluster is None else cluster
    clean = _strip_cluster(url)
    if cluster:
        return RedisCluster.from_url(clean)
    return redis.Redis.from_url(clean, **{"health_check_interval": 30, **options})


def async_client(url: str, *, cluster: bool, **options: Any) -> AsyncRedis:
    """``options`` go to redis-py (e.g. ``max_connections``: one per blocked reader)."""
    clean = _strip_cluster(url)
    if cluster:
        return aredis.RedisCluster.from_url(clean, **options)
    return aredis.Redis.from_url(clean, **options)


class RawConnection:
    """A connection of its own for the hot paths (a submit, a worker's read): the
    commands go out packed in one write and their replies are read as they come,
    with none of redis-py's per-command machinery. One thread at a time."""

    def __init__(self, client: SyncRedis) -> None:
        pool = client.connection_pool  # a standalone client: its URL, socket and options
        self._conn = pool.connection_class(**pool.connection_kwargs)

    def call(self, *commands: Sequence[Any]) -> list[Any]:
        """Each command's reply; an error reply is returned, not raised. A connection
        that failed is reopened once (as after a server restart)."""
        try:
            return self._call(commands)
        except RedisConnectionError:
            return self._call(commands)

    def _call(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        conn = self._conn
        try:
            conn.send_packed_command(pack(commands))
            return [_reply(conn) for _ in commands]
        except BaseException:
            self.close()  # replies may be left unread: start afresh
            raise

    def script(self, source: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """EVALSHA ``source``, loading it first if the server does not have it."""
        [reply] = self.call(script_command(source, keys, args))
        if isinstance(reply, NoScriptError):
            self.call(["SCRIPT", "LOAD", source])
            [reply] = self.call(script_command(source, keys, args))
        if isinstance(reply, Exception):
            raise reply
        return reply

    def close(self) -> None:
        self._conn.disconnect()


class AsyncRawConnection:
    """RawConnection for the event loop (the worker's event writer). A connection
    error is raised for the caller to retry the whole batch."""

    def __init__(self, client: AsyncRedis) -> None:
        pool = client.connection_pool
        self._conn = pool.connection_class(**pool.connection_kwargs)
        self._lock = asyncio.Lock()  # one batch on the wire at a time

    async def call(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Each command's reply; an error reply is returned, not raised."""
        async with self._lock:
            return await self._call(commands)

    async def _call(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        conn = self._conn
        try:
            await conn.send_packed_command(pack(commands))
            replies = []
            for _ in commands:
                try:
                    replies.append(await conn.read_response())
                except ResponseError as error:
                    replies.append(error)
            return replies
        except BaseException:
            await self.close()  # replies may be left unread: start afresh
            raise

    async def close(self) -> None:
        await self._conn.disconnect()


def pack(commands: Sequence[Sequence[Any]]) -> list[bytes]:
    """Commands in the wire format, packed in C (str, bytes, int and float arguments)."""
    return [hiredis.pack_command(tuple(command)) for command in commands]


def script_command(source: str, keys: Sequence[Any], args: Sequence[Any]) -> list[Any]:
    """The EVALSHA command that runs ``source``."""
    return ["EVALSHA", _sha(source), len(keys), *keys, *args]


@functools.cache
def _sha(source: str) -> str:
    return hashlib.sha1(source.encode()).hexdigest()


def _reply(conn: Any) -> Any:
    try:
        return conn.read_response()
    except ResponseError as error:
        return error
