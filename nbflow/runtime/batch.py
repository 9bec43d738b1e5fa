"""Commands for one round trip: a pipeline, or on Redis Cluster the same commands
awaited one after another, in order (cluster pipelines refuse scripts).

With a raw connection (the worker's event writer on a standalone server) the
commands are packed and sent as they are, skipping redis-py's pipeline: on a
busy worker that machinery was about a fifth of the event loop's time. Only the
commands the writer sends exist in that mode.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import redis.exceptions

from .connection import AsyncRawConnection

# Errors that mean the server is unreachable: the whole batch must be retried,
# never recorded as one command's reply.
UNREACHABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


class Batch:
    def __init__(
        self, client: Any, *, cluster: bool, raw: AsyncRawConnection | None = None
    ) -> None:
        self._redis = client
        self._raw = None if cluster else raw
        self._pipe = None if cluster or raw else client.pipeline(transaction=False)
        self._pending: list[Any] = []
        self._commands: list[list[Any]] = []  # raw mode

    def eval(self, script: str, keys: Sequence[str], args: Sequence[Any]) -> None:
        self._queue("eval", script, len(keys), *keys, *args)

    def hset(self, name: str, *, mapping: Mapping[str, Any]) -> None:
        if self._raw is not None:
            self._commands.append(["HSET", name, *(x for pair in mapping.items() for x in pair)])
        else:
            self._queue("hset", name, mapping=mapping)

    def __getattr__(self, name: str) -> Any:
        if self._raw is not None and name not in _RAW:
            raise AttributeError(f"{name} is not sent by a raw batch")
        return lambda *args, **kwargs: self._queue(name, *args, **kwargs)

    def _queue(self, name: str, *args: Any, **kwargs: Any) -> None:
        if self._raw is not None:
            self._commands.append([_RAW[name], *args])
        elif self._pipe is not None:
            getattr(self._pipe, name)(*args, **kwargs)
        else:
            self._pending.append(getattr(self._redis, name)(*args, **kwargs))

    async def execute(self, *, raise_on_error: bool = True) -> list[Any]:
        if self._raw is not None:
            replies = await self._raw.call(self._commands)
            errors = [r for r in replies if isinstance(r, Exception)]
            if errors and raise_on_error:
                raise errors[0]
            return replies
        if self._pipe is not None:
            return list(await self._pipe.execute(raise_on_error=raise_on_error))
        replies = []
        for awaitable in self._pending:
            try:
                replies.append(await awaitable)
            except UNREACHABLE:
                raise
            except Exception as error:
                if raise_on_error:
                    raise
                replies.append(error)
        return replies


# The commands a raw batch sends, whose arguments go out in redis-py's order.
_RAW = {"eval": "EVAL", "hincrby": "HINCRBY", "hincrbyfloat": "HINCRBYFLOAT", "zrem": "ZREM"}
