"""A short seeded set of fault-injection trials (bench/chaos.py runs long ones)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import FAULTS, Rig, trial

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    rig = Rig(Path(tempfile.mkdtemp(prefix="nbf-chaos-")))
    rig.start()
    yield rig
    rig.stop()


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_every_run_keeps_an_exact_log_through_each_kind_of_fault(rig: Rig, fault: str) -> None:
    from . import harness

    chosen = {fault: FAULTS[fault]}
    original = dict(harness.FAULTS)
    harness.FAULTS.clear()
    harness.FAULTS.update(chosen)
    try:
        report = trial(rig, seed=sorted(original).index(fault), runs=5, faults=2)
    finally:
        harness.FAULTS.clear()
        harness.FAULTS.update(original)
    assert report.faults == [fault, fault]
    assert report.violations == []


@pytest.mark.parametrize("seed", [101, 202, 303])
def test_every_run_keeps_an_exact_log_through_mixed_seeded_faults(rig: Rig, seed: int) -> None:
    report = trial(rig, seed=seed, runs=6, faults=3)
    assert report.violations == []
