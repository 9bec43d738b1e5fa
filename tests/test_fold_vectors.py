"""The Python fold meets the shared vectors that the TypeScript fold's jest tests also read:
waits, inputs and child runs; published states (state.patch) and JSON emits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nbflow._fold import RunState, fold

VECTORS = Path(__file__).parent / "vectors"
CASES = [
    case
    for name in ("fold_waits.json", "fold_state.json")
    for case in json.loads((VECTORS / name).read_text())["cases"]
]


def observed(state: RunState) -> dict[str, Any]:
    children = [
        {
            "child_id": child_id,
            "workflow": child.get("workflow"),
            "status": child.get("status"),
            "total_tokens": child.get("total_tokens", 0),
            "cost_usd": child.get("cost_usd", 0),
        }
        for child_id, child in state.children.items()
    ]
    return {
        "status": state.status,
        "wait": state.wait,
        "inputs": state.inputs,
        "children": children,
        "warnings": state.warnings,
        "published": state.published,
        "output": state.emitted,
    }


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_the_python_fold_reaches_the_expected_state(case: dict[str, Any]) -> None:
    got = observed(fold(case["events"]))
    expected = case["expected"]
    assert {k: got[k] for k in expected} == expected
