"""Listing runs: one query behind ``nf.runs()``, ``Runtime.runs``, ``GET /runs``, the
server extension and ``nbflow runs``.

Runs come newest first (by ``created_at``, then by id), filters are applied before
the limit, and a page ends with a cursor: the position of the last run it looked at,
from which the next page goes on. A position, not an offset, so that runs started
while a client pages (they are newer) or expired (they leave the index) neither
repeat a run nor skip one.

The index is one sorted set (``RUNS_INDEX``, one Cluster slot); each run's metadata
lives in the run's own slot, so filters other than ``since`` are applied here, over
pipelined reads of the metadata. One page looks through at most ``SCAN_MAX`` runs: a
filter that matches few of many runs may give a page with fewer than ``limit`` runs
and a cursor to go on from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .. import constants as c
from .connection import SyncRedis
from .protocol import decode_meta

SCAN_MAX = 10_000  # runs one page looks through at most
READ_BATCH = 500  # index entries whose metadata is read in one round trip
FILTER_FIELDS = ("status", "workflow", "parent_id", "notebook", "kernel", "cell")  # RunQuery's
# created_at (decimal seconds), then the run id. Every string of this form is a
# position: the REST API's schema says so, and any such cursor is accepted.
CURSOR_PATTERN = r"^[0-9]{1,16}(\.[0-9]{1,17})?_[0-9A-Za-z]{1,64}$"
_CURSOR = re.compile(CURSOR_PATTERN)

Position = tuple[float, str]  # an index entry: created_at, run id


@dataclass(frozen=True)
class RunQuery:
    """Which runs to list; every filter given must hold (None: any).

    :param status: one status, or several (any of them).
    :param workflow: the workflow's name.
    :param since: created at or after this (a datetime, or Unix seconds).
    :param parent: started by this run (its children).
    :param notebook: started from this notebook.
    :param kernel: started from this kernel (a notebook's runs where no path is known).
    :param cell: started by this notebook cell with these inputs (its magic's key).
    """

    status: str | tuple[str, ...] | None = None
    workflow: str | None = None
    since: float | datetime | None = None
    parent: str | None = None
    notebook: str | None = None
    kernel: str | None = None
    cell: str | None = None

    @property
    def since_s(self) -> float | None:
        return self.since.timestamp() if isinstance(self.since, datetime) else self.since

    def filtered(self) -> bool:
        """Whether a filter other than ``since`` is given (one read from the metadata)."""
        fields = (self.status, self.workflow, self.parent, self.notebook, self.kernel, self.cell)
        return any(v is not None for v in fields)

    def matches(self, meta: dict[str, Any]) -> bool:
        statuses = (self.status,) if isinstance(self.status, str) else self.status
        fields = {
            "workflow": self.workflow,
            "parent_id": self.parent,
            "notebook": self.notebook,
            "kernel": self.kernel,
            "cell": self.cell,
        }
        return (statuses is None or meta.get("status") in statuses) and all(
            want is None or meta.get(name) == want for name, want in fields.items()
        )


@dataclass
class RunPage:
    """Runs' metadata, newest first, and the cursor of the next page (None: no more)."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    next_cursor: str | None = None


def encode_cursor(position: Position) -> str:
    return f"{position[0]!r}_{position[1]}"


def decode_cursor(cursor: str) -> Position:
    """The position a cursor names; ValueError for a string that is not a cursor."""
    if not _CURSOR.fullmatch(cursor):
        raise ValueError(f"{cursor!r} is not a cursor (pass back a page's next_cursor as it is)")
    created, run_id = cursor.split("_")
    return float(created), run_id


def list_runs(
    redis: SyncRedis,
    query: RunQuery = RunQuery(),
    *,
    limit: int = 100,
    cursor: str | None = None,
    scan_max: int = SCAN_MAX,
) -> RunPage:
    """One page of at most ``limit`` runs matching ``query``, older than ``cursor``."""
    if limit < 1:
        raise ValueError(f"limit must be 1 or more, not {limit}")
    scan_max = max(scan_max, limit + 1)
    position = decode_cursor(cursor) if cursor else None
    found: list[tuple[Position, dict[str, Any]]] = []
    scanned = 0
    while len(found) <= limit and scanned < scan_max:
        want = READ_BATCH if query.filtered() else limit + 1 - len(found)
        entries = _older(redis, position, query.since_s, min(want, scan_max - scanned))
        if not entries:
            return RunPage([meta for _, meta in found])
        for entry, meta in zip(entries, _matching(redis, query, entries), strict=True):
            position, scanned = entry, scanned + 1
            if meta is not None:
                found.append((entry, meta))
            if len(found) > limit:
                break
    # One run more than the page holds proves there are more; a scan cut short may hide some.
    last = found[limit - 1][0] if len(found) > limit else position
    return RunPage([meta for _, meta in found[:limit]], encode_cursor(last) if last else None)


def fill_page(
    redis: SyncRedis, query: RunQuery, *, limit: int, cursor: str | None = None
) -> RunPage:
    """As ``list_runs``, going on past ``SCAN_MAX`` until ``limit`` runs are found or
    none are left (for callers that want the runs, not a bounded request)."""
    page = RunPage(next_cursor=cursor)
    while True:
        more = list_runs(redis, query, limit=limit - len(page.runs), cursor=page.next_cursor)
        page = RunPage(page.runs + more.runs, more.next_cursor)
        if len(page.runs) >= limit or page.next_cursor is None:
            return page


def _older(
    redis: SyncRedis, position: Position | None, since_s: float | None, count: int
) -> list[Position]:
    """Up to ``count`` index entries after ``position``, newest first, created since ``since_s``."""
    low: float | str = "-inf" if since_s is None else since_s
    if position is None:
        return _range(redis, "+inf", low, count)
    created, run_id = position
    if since_s is not None and created < since_s:
        return []
    # Runs created in the same instant are ordered by id; those before run_id come first.
    tied = sorted(
        (entry for entry in _range(redis, created, created, None) if entry[1] < run_id),
        reverse=True,
    )[:count]
    return tied + _range(redis, f"({created!r}", low, count - len(tied))


def _range(redis: SyncRedis, high: Any, low: Any, count: int | None) -> list[Position]:
    if count is not None and count <= 0:
        return []
    offset = None if count is None else 0
    found = redis.zrange(
        c.RUNS_INDEX, high, low, desc=True, byscore=True, offset=offset, num=count, withscores=True
    )
    return [(score, member.decode()) for member, score in found]


def _matching(
    redis: SyncRedis, query: RunQuery, entries: list[Position]
) -> list[dict[str, Any] | None]:
    """Each run's metadata if it matches ``query``, else None. A filter is checked on
    the fields it reads first: whole metadata (a run's pickled arguments and result
    among them) is read only for the runs that match."""
    run_ids = [run_id for _created, run_id in entries]
    if query.filtered():
        pipe = redis.pipeline(transaction=False)
        for run_id in run_ids:
            pipe.hmget(c.run_meta(run_id), FILTER_FIELDS)
        firsts = [dict(zip(FILTER_FIELDS, values, strict=True)) for values in pipe.execute()]
        keep = [query.matches(decode_meta(_present(first))) for first in firsts]
    else:
        keep = [True] * len(run_ids)
    metas = iter(_metas(redis, [run_id for run_id, k in zip(run_ids, keep, strict=True) if k]))
    chosen = [next(metas) if k else None for k in keep]
    return [m if m is not None and query.matches(m) else None for m in chosen]


def _present(fields: dict[str, bytes | None]) -> dict[bytes, bytes]:
    return {name.encode(): value for name, value in fields.items() if value is not None}


def _metas(redis: SyncRedis, run_ids: list[str]) -> list[dict[str, Any] | None]:
    """Each run's metadata, None for a run that expired after the index listed it."""
    pipe = redis.pipeline(transaction=False)
    for run_id in run_ids:
        pipe.hgetall(c.run_meta(run_id))
    return [decode_meta(raw) if raw else None for raw in pipe.execute()]
