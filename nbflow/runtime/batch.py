"""Commands for one round trip: a pipeline, or on Redis Cluster the same commands
awaited one after another, in order (cluster pipelines refuse scripts)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.exceptions

# Errors that mean the server is unreachable: the whole batch must be retried,
# never recorded as one command's reply.
UNREACHABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


class Batch:
    def __init__(self, client: Any, *, cluster: bool) -> None:
        self._redis = client
        self._pipe = None if cluster else client.pipeline(transaction=False)
        self._pending: list[Any] = []

    def eval(self, script: str, keys: Sequence[str], args: Sequence[Any]) -> None:
        self._queue("eval", script, len(keys), *keys, *args)

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: self._queue(name, *args, **kwargs)

    def _queue(self, name: str, *args: Any, **kwargs: Any) -> None:
        if self._pipe is not None:
            getattr(self._pipe, name)(*args, **kwargs)
        else:
            self._pending.append(getattr(self._redis, name)(*args, **kwargs))

    async def execute(self, *, raise_on_error: bool = True) -> list[Any]:
        if self._pipe is not None:
            return list(await self._pipe.execute(raise_on_error=raise_on_error))
        replies: list[Any] = []
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
