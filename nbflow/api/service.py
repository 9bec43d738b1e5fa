"""What the routes do: start runs through the runtime client; read runs and logs from Redis."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aredis
from anyio import to_thread

from .. import constants as c
from .._waitinfo import wait_of
from .._workflow import Workflow
from ..errors import InputRejected
from ..runtime.client import Runtime
from ..runtime.connection import AsyncRedis, async_client
from ..runtime.listing import RunPage, list_runs
from ..runtime.protocol import decode_meta
from ..runtime.run import Run
from . import views
from .catalog import Catalog
from .errors import ApiError
from .models import (
    Cancelled,
    InputAccepted,
    RunDetail,
    RunFilter,
    RunList,
    RunResult,
    StateValue,
)
from .reader import Hub

log = logging.getLogger("nbflow.api")

# Redis Cluster: one pool per node, shared by short commands and blocked reads alike.
CLUSTER_MAX_CONNECTIONS = 10_000


@dataclass
class Service:
    runtime: Runtime
    redis: AsyncRedis
    hub: Hub
    catalog: Catalog

    @classmethod
    def open(cls, runtime: Runtime, app: dict[str, Workflow]) -> Service:
        client = api_client(runtime.url, cluster=runtime.cluster)
        hub = Hub(client, reader=reader_factory(runtime.url, cluster=runtime.cluster))
        return cls(runtime, client, hub, Catalog(client, runtime.secret, app))

    async def warm(self) -> None:
        """Open the short-command pool whole, so that it never grows afterwards (its
        connections reconnect in place); a runtime that is down is only logged."""
        if self.runtime.cluster:
            return
        try:
            await asyncio.gather(*(self.redis.ping() for _ in range(c.API_REDIS_CONNECTIONS)))
        except redis.RedisError as error:
            log.warning("the runtime cannot be reached yet: %s", error)

    async def close(self) -> None:
        await self.hub.close()
        await self.redis.aclose()

    # --- writes: through the runtime client ---------------------------------
    async def start(self, name: str, data: dict[str, Any]) -> str:
        """Validate ``data`` and start a run; nothing is written unless both succeed."""
        served = await self.catalog.get(name)
        kwargs = served.input.validate(data)
        if served.workflow is not None:
            # An --app workflow is importable: it ships by reference (its module's
            # name), so any worker that can import the module runs it.
            start = functools.partial(self.runtime.submit, served.workflow, (), kwargs, via="api")
        else:
            start = functools.partial(self.runtime.start, name, kwargs, via="api")
        run: Run = await to_thread.run_sync(start)
        return run.id

    async def cancel(self, run_id: str) -> Cancelled:
        outcome = await to_thread.run_sync(Run(self.runtime, check_id(run_id)).cancel)
        status = await self.status(run_id)
        return Cancelled.model_validate({"run_id": run_id, "outcome": outcome, "status": status})

    async def state(self, run_id: str, name: str) -> StateValue:
        """The latest value the run published as ``name``."""
        await self.exists(run_id)
        raw = await self.redis.hget(c.run_steps(run_id), c.STATE_PREFIX + name)
        value = None if raw is None else json.loads(raw)
        return StateValue(run_id=run_id, name=name, published=raw is not None, value=value)

    async def send_input(self, run_id: str, name: str, value: Any) -> InputAccepted:
        """Answer the run's wait for input ``name``: 422 for a value its schema refuses,
        409 when the run does not wait for that input (or it was answered already)."""
        raw = await self.redis.hgetall(c.run_meta(check_id(run_id)))
        if not raw:
            raise not_found(run_id)
        wait = wait_of(decode_meta(raw))
        if wait and wait.get("kind") == "input" and wait.get("name") == name:
            # Checked here first so that a bad value is told apart from a conflict;
            # send_input checks again, against the wait it records the answer for.
            schema = wait.get("schema")
            if schema is not None:
                _check_value(value, schema, name)
        try:
            await to_thread.run_sync(Run(self.runtime, run_id).send_input, name, value)
        except InputRejected as rejected:
            raise ApiError(409, "input_conflict", str(rejected)) from None
        status = await self.status(run_id)
        return InputAccepted.model_validate({"run_id": run_id, "name": name, "status": status})

    # --- reads: straight from Redis ---------------------------------------------
    async def status(self, run_id: str) -> str:
        value = await self.redis.hget(c.run_meta(check_id(run_id)), "status")
        if value is None:
            raise not_found(run_id)
        return str(value.decode())

    async def exists(self, run_id: str) -> None:
        if not await self.redis.exists(c.run_meta(check_id(run_id))):
            raise not_found(run_id)

    async def detail(self, run_id: str) -> RunDetail:
        raw = await self.redis.hgetall(c.run_meta(check_id(run_id)))
        if not raw:
            raise not_found(run_id)
        return await to_thread.run_sync(views.detail, raw, self.runtime.secret)

    async def result(self, run_id: str) -> RunResult:
        run = await self.detail(run_id)
        return RunResult(run_id=run_id, status=run.status, output=run.output, error=run.error)

    async def runs(self, wanted: RunFilter) -> RunList:
        """A page of runs, as ``nf.runs()`` and ``nbflow runs`` list them."""
        page = await self.run_page(wanted)
        runs = [views.summary(meta) for meta in page.runs]
        return RunList(runs=runs, next_cursor=page.next_cursor)

    async def run_page(self, wanted: RunFilter) -> RunPage:
        """A page of runs' metadata (the runtime's one listing query)."""
        listing = functools.partial(list_runs, limit=wanted.limit, cursor=wanted.cursor)
        return await to_thread.run_sync(listing, self.runtime.redis, wanted.query())


def _check_value(value: Any, schema: dict[str, Any], name: str) -> None:
    from ..runtime.wakeups import validate

    try:
        validate(value, schema, name)
    except InputRejected as rejected:
        message = str(rejected)
        raise ApiError(
            422, "invalid_input", message, fields=[{"field": "value", "message": message}]
        ) from None


def api_client(url: str, *, cluster: bool) -> AsyncRedis:
    """Short commands share a pool of API_REDIS_CONNECTIONS at most (a command waits
    up to API_REDIS_WAIT_S for one): a burst of clients cannot grow it."""
    if cluster:
        return async_client(url, cluster=True, max_connections=CLUSTER_MAX_CONNECTIONS)
    parsed = async_client(url, cluster=False).connection_pool  # the URL read as nbflow reads it
    pool = aredis.BlockingConnectionPool(
        connection_class=parsed.connection_class,
        max_connections=c.API_REDIS_CONNECTIONS,
        timeout=c.API_REDIS_WAIT_S,
        **{**parsed.connection_kwargs, "client_name": client_name()},
    )
    return aredis.Redis.from_pool(pool)


def reader_factory(url: str, *, cluster: bool) -> Callable[[], AsyncRedis] | None:
    """A connection of its own for each followed run's blocked read, closed when no
    client follows the run any more (None: Cluster reads go through the shared pools)."""
    if cluster:
        return None
    return functools.partial(
        async_client,
        url,
        cluster=False,
        single_connection_client=True,
        client_name=client_name(),
    )


def client_name() -> str:
    """How this process's connections show in CLIENT LIST: ``nbflow-api:<pid>``."""
    return f"{c.API_CLIENT_NAME}:{os.getpid()}"


def check_id(run_id: str) -> str:
    # Run ids are short hex; anything else names no run (and never reaches a Redis key).
    if not (run_id.isascii() and run_id.isalnum()) or len(run_id) > 64:
        raise not_found(run_id)
    return run_id


def not_found(run_id: str) -> ApiError:
    return ApiError(
        404, "run_not_found", f"no run {run_id!r} (unknown, or expired after its retention)"
    )
