"""Redis clients for one URL: standalone or Cluster, sync or asyncio."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse

import redis
import redis.asyncio as aredis
from redis.cluster import RedisCluster

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
