"""Waiting for many runs at once (``nf.wait``): one blocking read follows many logs.

One ``run.wait()`` per run costs each run its own round trips, one after the
other. Here the statuses of all the runs are read in one round trip; then the
logs of up to ``WINDOW`` unfinished runs are followed by one blocking XREAD, and
only the runs whose logs moved have their status read again. The window keeps
each read's cost on the server bounded (a blocking read registers every key it
names); runs tend to end in the order they were started, so the window moves on
as its first runs end. On Redis Cluster, where one read cannot name keys of many
slots, the unfinished runs are waited on one after the other.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .. import _context as ctx
from .. import constants as c
from ..errors import ConfigError, RunNotFound
from .run import BLOCK_MS, READ_BATCH, patiently

if TYPE_CHECKING:
    from .client import Runtime
    from .run import Run

WINDOW = 128  # unfinished runs whose logs one blocking read follows


def wait_all(runs: Iterable[Run], timeout_s: float | None = None) -> list[str]:
    """Block until every run has ended; their statuses, in the order given.

    TimeoutError if some have not ended within ``timeout_s`` (the ones that
    have are not waited on again by a later call: they answer at once).
    """
    if _inside_a_durable_run():
        raise ConfigError(
            "nf.wait blocks a worker: inside a run, nf.gather(*runs) waits for child runs "
            "without holding one"
        )
    runs = list(runs)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    statuses: dict[str, str] = {}
    groups: dict[int, tuple[Runtime, list[str]]] = {}
    for run in runs:
        groups.setdefault(id(run.runtime), (run.runtime, []))[1].append(run.id)
    for runtime, ids in groups.values():
        _Waiter(runtime, list(dict.fromkeys(ids)), deadline, timeout_s, statuses).wait()
    return [statuses[run.id] for run in runs]


class _Waiter:
    """Waits for the runs ``ids`` of one runtime, noting each one's final status."""

    def __init__(
        self,
        runtime: Runtime,
        ids: list[str],
        deadline: float | None,
        timeout_s: float | None,
        statuses: dict[str, str],
    ) -> None:
        self.runtime = runtime
        self.redis = runtime.redis
        self.pending = ids
        self.deadline = deadline
        self.timeout_s = timeout_s
        self.statuses = statuses
        self.what = f"{len(ids)} runs"

    def wait(self) -> None:
        self._note(self.pending, self._statuses(self.pending))
        while self.pending:
            if self.runtime.cluster:
                self._one_by_one()
                return
            self._window(self.pending[:WINDOW])

    def _statuses(self, ids: list[str]) -> list[bytes | None]:
        def read() -> list[bytes | None]:
            pipe = self.redis.pipeline(transaction=False)
            for run_id in ids:
                pipe.hget(c.run_meta(run_id), "status")
            return list(pipe.execute())

        return patiently(self.what, read)

    def _note(self, ids: list[str], statuses: list[bytes | None]) -> None:
        """Note the runs that ended; RunNotFound for one that does not exist."""
        ended = set()
        for run_id, status in zip(ids, statuses, strict=True):
            if status is None:
                raise RunNotFound(f"no run {run_id!r} (unknown, or expired after its retention)")
            if status.decode() in c.TERMINAL_STATUSES:
                self.statuses[run_id] = status.decode()
                ended.add(run_id)
        if ended:
            self.pending = [run_id for run_id in self.pending if run_id not in ended]

    def _window(self, ids: list[str]) -> None:
        """Follow the logs of ``ids`` until at least one of them ends (or time runs out)."""
        lasts = self._last_ids(ids)  # then the statuses again: a run may end in between
        self._note(ids, self._statuses(ids))
        following = {run_id: last for run_id, last in lasts.items() if run_id in self.pending}
        while following:
            moved = self._moved(following, self._block_ms())
            if moved:
                self._note(list(moved), self._statuses(list(moved)))
                if any(run_id not in self.pending for run_id in moved):
                    return  # the window moves on
            for run_id in moved:
                following[run_id] = moved[run_id]

    def _last_ids(self, ids: list[str]) -> dict[str, str]:
        def read() -> list[list[tuple[bytes, dict[bytes, bytes]]]]:
            pipe = self.redis.pipeline(transaction=False)
            for run_id in ids:
                pipe.xrevrange(c.run_log(run_id), count=1)
            return list(pipe.execute())

        newest = patiently(self.what, read)
        return {i: (n[0][0].decode() if n else "0-0") for i, n in zip(ids, newest, strict=True)}

    def _moved(self, following: dict[str, str], block_ms: int) -> dict[str, str]:
        """The runs whose logs grew (within ``block_ms``), with their newest entry ids."""
        streams = {c.run_log(run_id): last for run_id, last in following.items()}
        reply = patiently(self.what, self.redis.xread, streams, READ_BATCH, block_ms)
        by_key = {c.run_log(run_id): run_id for run_id in following}
        return {by_key[key.decode()]: entries[-1][0].decode() for key, entries in reply or []}

    def _block_ms(self) -> int:
        if self.deadline is None:
            return BLOCK_MS
        remaining_ms = int((self.deadline - time.monotonic()) * 1000)
        if remaining_ms <= 0:
            raise TimeoutError(
                f"{len(self.pending)} of {self.what} still not ended after {self.timeout_s} s"
            )
        return min(remaining_ms, BLOCK_MS)

    def _one_by_one(self) -> None:
        from .run import Run

        for run_id in list(self.pending):
            remaining = None if self.deadline is None else self.deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(
                    f"{len(self.pending)} of {self.what} still not ended after {self.timeout_s} s"
                )
            self.statuses[run_id] = Run(self.runtime, run_id).wait(remaining)
            self.pending.remove(run_id)


def _inside_a_durable_run() -> bool:
    frame = ctx.current()
    return frame is not None and frame.run.runtime is not None
