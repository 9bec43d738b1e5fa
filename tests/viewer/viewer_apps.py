"""Workflows the viewer tests run: paced steps with progress, output and token usage."""

from __future__ import annotations

import time

import nbflow as nf


@nf.component
def step(i: int, sleep_s: float) -> int:
    time.sleep(sleep_s)
    return i


@nf.workflow
def paced(n: int = 5, sleep_s: float = 0.2) -> int:
    """``n`` steps of ``sleep_s`` each, announcing each one and streaming a line per step."""
    total = 0
    for i in range(n):
        nf.progress(f"step {i}")
        total += step(i, sleep_s)
        nf.emit(f"finished step {i}\n")
    return total


@nf.workflow
def broken() -> None:
    raise ValueError("the model said no")
