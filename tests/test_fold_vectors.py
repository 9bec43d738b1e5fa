"""The Python fold meets the fold's specification: the vectors in tests/vectors, which
extension/test/vectors.test.ts holds the TypeScript fold to as well (restarts, retries,
cache hits, tokens and rollups, cancellation, cut and truncated logs, hostile strings,
events without ``ts``, step timing, waits, child runs, published states and emits)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from nbflow._fold import fold

VECTORS = Path(__file__).parent / "vectors"
FILES = sorted(VECTORS.glob("fold_*.json"))
CASES = [
    pytest.param(case, id=f"{path.stem}: {case['name']}")
    for path in FILES
    for case in json.loads(path.read_text())["cases"]
]
SHAPE = json.loads((VECTORS / "state_fields.json").read_text())


def observed(state: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    """The state's values for the keys ``expected`` names (spans: the fields it names)."""
    got = {key: state[key] for key in expected if key != "spans"}
    if "spans" in expected:
        spans = {s["span_id"]: s for s in state["spans"]}
        got["spans"] = {
            span_id: {f: spans[span_id][f] for f in expected["spans"].get(span_id, {})}
            for span_id in spans
        }
    return got


@pytest.mark.parametrize("case", CASES)
def test_the_python_fold_reaches_the_expected_state(case: dict[str, Any]) -> None:
    state = fold(case["events"]).to_dict()
    got = observed(state, case["expected"])
    assert got == case["expected"]
    if "spans" in got:  # every span, in the order the fold keeps them
        assert list(got["spans"]) == list(case["expected"]["spans"])


@pytest.mark.parametrize("case", CASES)
def test_folding_leaves_the_events_as_they_were(case: dict[str, Any]) -> None:
    events = copy.deepcopy(case["events"])
    fold(events).to_dict()
    assert events == case["events"]


def test_the_state_and_its_spans_and_steps_have_the_fields_both_folds_write() -> None:
    events = [case["events"] for path in FILES for case in json.loads(path.read_text())["cases"]]
    state = fold([e for log in events for e in log]).to_dict()
    assert sorted(state) == sorted(SHAPE["state"])
    assert sorted(state["usage"]) == sorted(SHAPE["usage"])
    assert state["spans"] and state["steps"]
    for span in state["spans"]:
        assert sorted(span) == sorted(SHAPE["span"])
        assert sorted(span["rollup"]) == sorted(SHAPE["rollup"])
    for step in state["steps"]:
        assert sorted(step) == sorted(SHAPE["step"])
