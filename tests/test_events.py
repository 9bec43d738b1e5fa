"""Stream ids: the one parser every reader of a run's log uses, and the ids the in-process
log gives its events."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import nbflow as nf
from nbflow._events import MemorySink, make, parse_id

from .conftest import last_run


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("0", (0, 0)),
        ("0-0", (0, 0)),
        ("1718000000000-3", (1718000000000, 3)),
        ("9999999999999999999-9999999999999999999", (9999999999999999999, 9999999999999999999)),
    ],
)
def test_well_formed_ids_parse_to_ms_and_seq(text: str, position: tuple[int, int]) -> None:
    assert parse_id(text) == position


@pytest.mark.parametrize(
    "text",
    [
        "",
        "abc",
        "1-",
        "-1",
        "1-2-3",
        " 1",
        "1\n",
        "+1",
        "1_0",
        "\u0661",  # an Arabic-Indic digit: int() would take it, Redis would not
        "$",
        "10000000000000000000",  # 20 digits: past what a 64-bit part holds
        "1-10000000000000000000",
        "9" * 4300,
    ],
)
def test_malformed_ids_are_config_errors_that_quote_the_id(text: str) -> None:
    expected = r"not a stream id: .* \(expected '<ms>-<seq>' or '0'\)"
    with pytest.raises(nf.ConfigError, match=expected):
        parse_id(text)


def test_a_malformed_id_is_also_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_id("1-")


def test_ids_order_numerically_not_as_text() -> None:
    assert parse_id("10-0") > parse_id("9-5") > parse_id("9")


def test_a_local_runs_events_after_a_malformed_id_is_a_config_error() -> None:
    @nf.workflow
    def hello() -> str:
        return "hi"

    hello()
    run = last_run()
    assert run is not None
    assert [e["type"] for e in run.events(after="0")][-1] == "run.succeeded"
    with pytest.raises(nf.ConfigError, match="not a stream id: '1-2-3'"):
        list(run.events(after="1-2-3"))


def test_the_in_process_log_numbers_events_in_the_order_they_were_emitted() -> None:
    sink = MemorySink()
    now = time.time()
    # the clock going back, an event without ts, thousands in one millisecond
    stamps: list[Any] = [now, now - 5.0, None, *([now + 1.0] * 3000), now + 0.5, now + 2.0]
    for i, ts in enumerate(stamps):
        sink.emit({"type": "output", "i": i, "ts": ts})
    events = sink.events
    assert [e["i"] for e in events] == list(range(len(stamps)))
    ids = [parse_id(e["id"]) for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert ids[0][0] == int(now * 1000)
    assert ids[3] == (int((now + 1.0) * 1000), 0)
    assert ids[3 + 2999] == (int((now + 1.0) * 1000), 2999)
    assert ids[-1] == (int((now + 2.0) * 1000), 0)


def test_events_emitted_from_many_threads_are_numbered_in_the_order_of_the_log() -> None:
    sink = MemorySink()
    seen: list[list[str]] = []

    def emit(worker: int) -> None:
        for i in range(2000):
            sink.emit(make("output", worker=worker, i=i))
            if i % 500 == 0:
                seen.append([e["id"] for e in sink.events])  # read while others emit

    threads = [threading.Thread(target=emit, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    events = sink.events
    assert len(events) == 8000
    ids = [parse_id(e["id"]) for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    for worker in range(4):
        assert [e["i"] for e in events if e["worker"] == worker] == list(range(2000))
    for snapshot in seen:  # every read saw a numbered prefix of the final log
        assert snapshot == [e["id"] for e in events[: len(snapshot)]]


def test_a_listener_is_told_each_event_with_its_id() -> None:
    sink = MemorySink()
    told: list[str] = []
    sink.emit(make("output", chunk="before"))
    sink.subscribe(lambda event: told.append(event["id"]))
    sink.emit(make("output", chunk="a"))
    sink.commit_step(make("span.finished", status="ok"), "/s#1", 1)
    assert told == [e["id"] for e in sink.events[1:]]
