"""A traced call's step: its key, span id and recorded input, however cheaply made."""

from __future__ import annotations

import hashlib
import math
from typing import Any

import pytest

import nbflow as nf
from nbflow import _context as ctx
from nbflow._cache import local_cache
from nbflow._events import MemorySink
from nbflow._preview import preview
from nbflow._root import run_root
from nbflow._step import _arguments, arg_digest, bound_arguments
from nbflow.constants import MAX_PREVIEW_CHARS, REDACTED

PLAIN_VALUES: list[Any] = [
    0,
    -1,
    2**70,
    True,
    None,
    1.5,
    -0.0,
    math.inf,
    math.nan,
    "",
    'it\'s "quoted"',
    "100% %r %s",
    "línea\nnueva\ttab \x00 \u2028 😀",
    "x" * (MAX_PREVIEW_CHARS + 1),
]


def three(a: Any, b: Any = None, c: Any = None) -> None:
    pass


@pytest.mark.parametrize("value", PLAIN_VALUES, ids=repr)
@pytest.mark.parametrize("count", [1, 2, 3])
def test_plain_positional_arguments_get_the_digest_and_preview_of_the_general_path(
    value: Any, count: int
) -> None:
    comp = nf.component(three)
    args = (value, "second", 3)[:count]
    bound, digest, shown = _arguments(comp, args, {})
    assert bound == bound_arguments(comp, args, {}) == dict(zip("abc", args, strict=False))
    assert digest == arg_digest(bound)
    text = repr(tuple(bound.items()))
    assert digest == hashlib.blake2b(text.encode(), digest_size=6).hexdigest()
    assert repr(shown) == repr(preview(bound))  # repr: nan != nan


def test_a_call_without_arguments_digests_the_empty_tuple() -> None:
    comp = nf.component(lambda: None)
    _, digest, shown = _arguments(comp, (), {})
    assert digest == hashlib.blake2b(b"()", digest_size=6).hexdigest()
    assert shown == {}


def test_redacted_and_keyword_arguments_take_the_general_path() -> None:
    comp = nf.component(three, redact=("b",))
    bound, digest, shown = _arguments(comp, (1, "secret"), {})
    assert shown == {"a": 1, "b": REDACTED}
    assert digest == arg_digest(bound)
    bound, digest, shown = _arguments(nf.component(three), (1,), {"c": "k"})
    assert shown == bound == {"a": 1, "c": "k"}
    assert digest == arg_digest(bound)


def test_a_mutable_argument_is_recorded_as_it_was_when_the_call_began() -> None:
    @nf.component
    def grow(items: list[int], meta: dict[str, Any]) -> int:
        items.append(99)
        meta["seen"] = True
        return len(items)

    @nf.workflow
    def flow() -> int:
        items, meta = [1, 2], {"n": 1}
        n = grow(items, meta)
        items.append(100)
        return n

    assert flow() == 3
    run = nf.last_run()
    assert run is not None
    started = [e for e in run.events() if e["type"] == "span.started" and e["name"] == "grow"]
    assert started[0]["input"] == {"items": [1, 2], "meta": {"n": 1}}
    span = run.trace().spans.set_index("name").loc["grow"]
    assert span["input"] == {"items": [1, 2], "meta": {"n": 1}}


def test_step_keys_and_span_ids_follow_their_definitions() -> None:
    @nf.component
    def leaf(x: int, label: str) -> int:
        return x

    @nf.workflow
    def flow() -> None:
        leaf(1, "a")
        leaf(1, "a")
        leaf(2, "a")

    flow()
    run = nf.last_run()
    assert run is not None
    started = [e for e in run.events() if e["type"] == "span.started"]
    root, calls = started[0], started[1:]
    assert root["step"] == "/flow:" + arg_digest({}) + "#1"
    one, two = arg_digest({"x": 1, "label": "a"}), arg_digest({"x": 2, "label": "a"})
    assert [e["step"] for e in calls] == [
        f"{root['step']}/leaf:{one}#1",
        f"{root['step']}/leaf:{one}#2",
        f"{root['step']}/leaf:{two}#1",
    ]
    assert {e["parent_id"] for e in calls} == {root["span_id"]}
    # never replayed, an in-process run numbers its spans after the start of its id
    assert [e["span_id"] for e in started] == [f"{run.id[:8]}{n:08x}" for n in range(1, 5)]


def test_a_run_that_may_be_replayed_derives_span_ids_from_steps() -> None:
    @nf.component
    def leaf(x: int) -> int:
        return x

    @nf.workflow
    def flow() -> None:
        leaf(1)
        leaf(1)

    sink = MemorySink()
    context = ctx.RunContext("replayable", sink, local_cache, memo=NothingRecorded())
    run_root(context, flow, (), {})
    started = [e for e in sink.events if e["type"] == "span.started"]
    assert len(started) == 3
    for event in started:
        assert event["span_id"] == ctx.span_id_for("replayable", event["step"])
    assert len({e["span_id"] for e in started}) == 3


class NothingRecorded:
    """The memo of a run's first attempt."""

    def lookup(self, step: str) -> tuple[bool, Any]:
        return False, None

    def logged(self, position: str) -> int:
        return 0

    def made(self, position: str) -> str | None:
        return None
