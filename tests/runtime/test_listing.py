"""Listing runs: filters hold before the limit, newest first, and a cursor pages through
without repeating or skipping a run while new runs arrive (runtime/listing.py)."""

from __future__ import annotations

import os
from typing import Any

import pytest
import redis

import nbflow as nf
from nbflow import constants as c
from nbflow.runtime import listing
from nbflow.runtime.client import Runtime
from nbflow.runtime.listing import RunQuery, decode_cursor, fill_page, list_runs

from ..conftest import TEST_SECRET


@nf.workflow
def alpha(i: int) -> int:
    return i


@nf.workflow
def beta(i: int) -> int:
    return i


def _submit(wf: Any, n: int, **origin: Any) -> list[str]:
    """``n`` queued runs (no worker takes them), oldest first."""
    from nbflow.runtime.client import get_runtime

    return [get_runtime().submit(wf, (i,), {}, **origin).id for i in range(n)]


def _ids(page: listing.RunPage) -> list[str]:
    return [meta["run_id"] for meta in page.runs]


def _all_pages(rt: Runtime, query: RunQuery, *, limit: int, **options: Any) -> list[str]:
    seen: list[str] = []
    cursor = None
    for _ in range(1_000):
        page = list_runs(rt.redis, query, limit=limit, cursor=cursor, **options)
        seen += _ids(page)
        cursor = page.next_cursor
        if cursor is None:
            return seen
    raise AssertionError("the cursor never ran out")


def test_a_limit_of_exactly_the_matches_ends_without_a_cursor(runtime: Runtime) -> None:
    ids = _submit(alpha, 5)
    page = list_runs(runtime.redis, limit=5)
    assert _ids(page) == ids[::-1]
    assert page.next_cursor is None
    short = list_runs(runtime.redis, limit=4)
    assert _ids(short) == ids[:0:-1]
    assert short.next_cursor is not None
    rest = list_runs(runtime.redis, limit=4, cursor=short.next_cursor)
    assert (_ids(rest), rest.next_cursor) == ([ids[0]], None)


def test_filters_hold_before_the_limit_for_old_runs_beyond_the_newest(runtime: Runtime) -> None:
    old = _submit(beta, 3)
    newer = _submit(alpha, 30)
    for run_id in old:
        assert runtime.attach(run_id).cancel() == "cancelled"
    for query in (RunQuery(status="cancelled"), RunQuery(workflow="beta")):
        first = list_runs(runtime.redis, query, limit=2)
        assert _ids(first) == [old[2], old[1]]
        last = list_runs(runtime.redis, query, limit=2, cursor=first.next_cursor)
        assert (_ids(last), last.next_cursor) == ([old[0]], None)
    assert _ids(list_runs(runtime.redis, RunQuery(status="queued"), limit=30)) == newer[::-1]
    both = RunQuery(status=("queued", "cancelled"), workflow="beta")
    assert _ids(list_runs(runtime.redis, both, limit=10)) == old[::-1]
    frame = nf.runs(status="cancelled", limit=3)
    assert list(frame["run_id"]) == old[::-1]
    assert frame.attrs["next_cursor"] is None


def test_a_filter_reads_whole_metadata_only_for_the_runs_that_match(
    runtime: Runtime, r: redis.Redis
) -> None:
    if os.environ.get("NBFLOW_TEST_REDIS_URL"):
        pytest.skip("counts commands: only this session's embedded server is quiet enough")
    old = _submit(beta, 2)
    _submit(alpha, 40)
    before = _calls(r, "hgetall")
    assert _ids(list_runs(runtime.redis, RunQuery(workflow="beta"), limit=5)) == old[::-1]
    assert _calls(r, "hgetall") - before == 2  # the 40 others: their workflow field alone
    assert _ids(list_runs(runtime.redis, limit=5)) and _calls(r, "hgetall") - before == 8


def _calls(r: redis.Redis, command: str) -> int:
    stats: Any = r.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def test_a_page_looks_through_a_bounded_number_of_runs_and_says_where_to_go_on(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = _submit(beta, 2)
    _submit(alpha, 12)
    first = list_runs(runtime.redis, RunQuery(workflow="beta"), limit=2, scan_max=5)
    assert first.runs == []  # five runs looked at, none of them beta's
    assert first.next_cursor is not None
    assert _all_pages(runtime, RunQuery(workflow="beta"), limit=2, scan_max=5) == old[::-1]
    # The Python listing goes on past the bound until it has the runs asked for.
    monkeypatch.setattr(listing, "SCAN_MAX", 5)
    filled = fill_page(runtime.redis, RunQuery(workflow="beta"), limit=2)
    assert (_ids(filled), filled.next_cursor) == (old[::-1], None)
    assert list(nf.runs(workflow="beta", limit=1)["run_id"]) == [old[1]]


def test_cursor_paging_neither_repeats_nor_skips_a_run_while_new_runs_arrive(
    runtime: Runtime, r: redis.Redis
) -> None:
    ids = _submit(alpha, 20)
    expired = ids[4]
    seen: list[str] = []
    cursor = None
    while True:
        page = list_runs(runtime.redis, limit=3, cursor=cursor)
        seen += _ids(page)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
        _submit(alpha, 2)  # newer than every run listed so far
        r.zrem(c.RUNS_INDEX, expired)  # a run the sweeper drops at its retention
    assert seen == [i for i in ids[::-1] if i != expired]


def test_runs_created_in_the_same_instant_page_in_id_order(
    runtime: Runtime, r: redis.Redis
) -> None:
    ids = _submit(alpha, 7)
    same = sorted(ids[1:6])
    r.zadd(c.RUNS_INDEX, dict.fromkeys(same, 1_700_000_000.25))
    r.zadd(c.RUNS_INDEX, {ids[0]: 1_600_000_000.5})
    assert _all_pages(runtime, RunQuery(), limit=2) == [ids[6], *same[::-1], ids[0]]
    assert _all_pages(runtime, RunQuery(), limit=1) == [ids[6], *same[::-1], ids[0]]


def test_since_is_inclusive_and_parent_lists_a_runs_children(runtime: Runtime) -> None:
    ids = _submit(alpha, 6)
    created = float(runtime.attach(ids[3]).meta()["created_at"])
    assert _all_pages(runtime, RunQuery(since=created), limit=2) == ids[:2:-1]
    cursor = list_runs(runtime.redis, limit=1).next_cursor
    assert list_runs(runtime.redis, RunQuery(since=1e12), limit=5, cursor=cursor).runs == []
    children = _submit(beta, 3, parent_id=ids[0])
    assert _all_pages(runtime, RunQuery(parent=ids[0]), limit=2) == children[::-1]
    assert list(nf.runs(parent=ids[1])["run_id"]) == []


@pytest.mark.parametrize(
    "bad", ["", "abc", "1.5", "1.5_", "-1.5_ab", "1e9_ab", "1.5_a-b", "1.5_a_b"]
)
def test_a_string_that_is_not_a_cursor_is_refused(runtime: Runtime, bad: str) -> None:
    with pytest.raises(ValueError, match="is not a cursor"):
        decode_cursor(bad)
    if bad:
        with pytest.raises(ValueError, match="is not a cursor"):
            list_runs(runtime.redis, cursor=bad)


def test_listing_pages_runs_spread_over_a_three_master_cluster(tmp_path, runtime: Runtime) -> None:
    from nbflow.runtime.client import set_runtime

    from ..redis_servers import close_cluster_client, start_cluster

    with start_cluster(tmp_path) as cluster:
        rt = Runtime(f"{cluster.url}?cluster=1", secret=TEST_SECRET)
        set_runtime(rt)
        try:
            old = _submit(beta, 3)
            newer = _submit(alpha, 9)
            assert len({rt.redis.keyslot(c.run_meta(i)) for i in old + newer}) > 1
            assert _all_pages(rt, RunQuery(), limit=4) == (old + newer)[::-1]
            assert _all_pages(rt, RunQuery(workflow="beta"), limit=2, scan_max=4) == old[::-1]
            assert list(rt.runs(workflow="beta", limit=2)["run_id"]) == old[:0:-1]
        finally:
            set_runtime(runtime)
            close_cluster_client(rt.redis)
