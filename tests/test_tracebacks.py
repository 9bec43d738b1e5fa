"""Run tracebacks: nbflow's frames folded into one line each, the user's and their calls
into the standard library kept."""

from __future__ import annotations

import json

import pytest

import nbflow as nf


@nf.component
def parse(text: str) -> object:
    return json.loads(text)


@nf.workflow
def reads(text: str) -> object:
    return parse(text)


def test_a_users_call_into_the_standard_library_stays_and_nbflows_frames_fold() -> None:
    with pytest.raises(json.JSONDecodeError):
        reads("{")
    run = nf.last_run()
    assert run is not None
    failed = next(e for e in run.events() if e["type"] == "run.failed")
    lines = failed["traceback"].splitlines()
    frames = [line.strip() for line in lines if line.startswith("  File ") or "[…" in line]
    assert frames[0].startswith("[… ") and frames[0].endswith(" nbflow frames]")
    assert frames[1].endswith(", in reads") and frames[2].startswith("[… ")
    assert frames[3].endswith(", in parse")
    assert all("json" in f for f in frames[4:]) and len(frames) > 4  # json.loads's own frames
    assert "/nbflow/" not in failed["traceback"]
    assert lines[-1].startswith("json.decoder.JSONDecodeError: Expecting property name")
