"""nf.publish streams structured state as patches; nf.emit streams JSON values as JSON."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

import nbflow as nf
from nbflow._state import APPEND, apply, diff


def test_a_patch_rebuilds_the_new_value_and_string_growth_is_an_append() -> None:
    old = {"title": "Otters", "steps": [{"q": "habitat", "notes": "riv"}], "done": False}
    new = {
        "title": "Otters",
        "steps": [{"q": "habitat", "notes": "rivers"}, {"q": "diet"}],
        "done": True,
    }
    patch = diff(old, new)
    assert apply(old, patch) == new
    assert {"op": APPEND, "path": "/steps/0/notes", "value": "ers"} in patch
    assert old["steps"][0]["notes"] == "riv"  # apply makes a new object


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ({"a~b": "x", "c/d": "y"}, {"a~b": "xz", "c/d": "yz"}),  # escaped pointers
        ("text", "text and more"),  # the root itself grows
        ([1, 2], {"now": "a dict"}),
        ({"a": "abc"}, {"a": "xbc"}),  # not a prefix: a replace
    ],
)
def test_patches_round_trip_through_json(old: Any, new: Any) -> None:
    patch = json.loads(json.dumps(diff(old, new)))
    assert apply(old, patch) == new


@nf.workflow
def planner(n: int) -> dict[str, Any]:
    plan: dict[str, Any] = {"topic": "otters", "steps": [], "summary": ""}
    for i in range(n):
        plan["steps"].append({"q": f"question {i}", "status": "open"})
        nf.publish("plan", plan)
        plan["steps"][i]["status"] = "done"
        plan["summary"] += f"finding {i}. "
        nf.publish("plan", plan)
    nf.emit({"final": True, "steps": n})
    nf.emit("text;")
    return plan


def test_in_process_the_run_rebuilds_each_published_state_and_keeps_json_emits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("nbflow._state.PUBLISH_INTERVAL_S", 0.0)  # a patch per publish
    final = planner(5)
    run = nf.last_run()
    assert run.state("plan") == final
    assert run.trace().state.published == {"plan": final}
    assert run.trace().emits == [{"final": True, "steps": 5}, "text;"]
    assert run.trace().emitted == '{"final": true, "steps": 5}text;'
    patches = [e for e in run.events() if e["type"] == "state.patch"]
    assert len(patches) == 10
    summary_ops = [op for p in patches for op in p["patch"] if op["path"] == "/summary"]
    assert [op["op"] for op in summary_ops] == [APPEND] * 5  # the text grows, never resent


def test_a_value_json_cannot_hold_is_a_clear_error_naming_the_state() -> None:
    @nf.workflow
    def bad() -> None:
        nf.publish("plan", {"when": object()})

    with pytest.raises(nf.ConfigError, match=r"nf.publish\('plan'\): the value must be JSON"):
        bad()


@nf.workflow
def streams_notes(n: int, gap_s: float) -> dict[str, Any]:
    notes: dict[str, Any] = {"text": ""}
    for i in range(n):
        notes["text"] += f"token{i} "
        nf.publish("notes", notes)
        time.sleep(gap_s)
    return notes


def test_publishes_within_the_interval_go_out_as_one_patch_and_the_last_always_goes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("nbflow._state.PUBLISH_INTERVAL_S", 0.2)
    final = streams_notes(30, 0.01)  # 0.3 s of publishes, 10 ms apart
    run = nf.last_run()
    patches = [e for e in run.events() if e["type"] == "state.patch"]
    assert 1 <= len(patches) <= 3  # one per 0.2 s, and the last at the run's end
    assert run.state("notes") == final
    assert patches[-1]["id"] < next(e["id"] for e in run.events() if e["type"] == "run.succeeded")


def test_a_waiting_publish_goes_out_before_the_next_emit() -> None:
    @nf.workflow
    def ordered() -> None:
        nf.publish("s", {"v": 1})
        nf.publish("s", {"v": 2})  # within the interval: one patch with the first
        nf.emit("after")

    ordered()
    events = [e for e in nf.last_run().events() if e["type"] in ("state.patch", "output")]
    assert [e["type"] for e in events] == ["state.patch", "output"]
    assert events[0]["patch"] == [{"op": "replace", "path": "", "value": {"v": 2}}]
