"""Commands for one round trip: a pipeline, or on Redis Cluster the same commands
awaited one after another, in order (cluster pipelines refuse scripts).

With a raw connection (the worker's event writer on a standalone server) the
commands are packed and sent as they are, skipping redis-py's pipeline: on a
busy worker that machinery was about a fifth of the event loop's time. Only the
commands the writer sends exist in that mode.

A raw batch runs its scripts by digest (EVALSHA), not by their text: their text
was most of the bytes a run sent the server. A server that lost its scripts (a
restart) answers NOSCRIPT without running the script, so those commands are sent
again after loading it. That is only safe for a run with no other command in the
batch (its later command would have run before the one sent again), so a run's
scripts go by their text whenever the batch holds more than one for it. A run is
known by the hash tag of its keys (``{run id}``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import redis.exceptions
from redis.exceptions import NoScriptError

from .connection import AsyncRawConnection, script_command

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
        self._scripts: dict[int, tuple[str, str]] = {}  # raw mode: at -> text, run's tag

    def eval(self, script: str, keys: Sequence[str], args: Sequence[Any]) -> None:
        if self._raw is not None:
            self._scripts[len(self._commands)] = (script, _tag(keys[0]) if keys else "")
            self._commands.append(script_command(script, keys, args))
        else:
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
            replies = await self._raw_call()
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

    async def _raw_call(self) -> list[Any]:
        assert self._raw is not None
        self._by_text_where_order_matters()
        replies = await self._raw.call(self._commands)
        missing = [at for at, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if not missing:
            return replies
        texts = list(dict.fromkeys(self._scripts[at][0] for at in missing))
        loads = [["SCRIPT", "LOAD", text] for text in texts]
        again = await self._raw.call(loads + [self._commands[at] for at in missing])
        for at, reply in zip(missing, again[len(loads) :], strict=True):
            replies[at] = reply
        return replies

    def _by_text_where_order_matters(self) -> None:
        """EVAL with the text for every script of a run that has more than one here."""
        seen: dict[str, int] = {}
        for _text, tag in self._scripts.values():
            seen[tag] = seen.get(tag, 0) + 1
        for at, (text, tag) in self._scripts.items():
            if seen[tag] > 1 or not tag:
                self._commands[at][:2] = ["EVAL", text]


def _tag(key: str) -> str:
    """A key's hash tag: what is between its first ``{`` and the ``}`` after it."""
    start = key.find("{")
    end = key.find("}", start + 1)
    return key[start + 1 : end] if start >= 0 and end > start + 1 else ""


# The commands a raw batch sends, whose arguments go out in redis-py's order.
_RAW = {"eval": "EVAL", "hincrby": "HINCRBY", "hincrbyfloat": "HINCRBYFLOAT", "zrem": "ZREM"}
