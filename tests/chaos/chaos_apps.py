"""The workflow the fault-injection trials run, served by name to `nbflow worker --app`.

Each execution of a step appends one line to a ledger file (outside Redis, so that
it survives the server's faults): run id, step, attempt and pid. The checker
compares the ledger with the steps the log says were committed.
"""

from __future__ import annotations

import os
import time

import nbflow as nf
from nbflow import _context as ctx


def _record(step: int) -> None:
    frame = ctx.current()
    assert frame is not None
    run = frame.run
    line = f"{run.run_id} {step} {run.attempt} {os.getpid()}\n".encode()
    fd = os.open(os.environ["NBFLOW_CHAOS_LEDGER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line)  # one short write with O_APPEND: whole lines, never interleaved
    finally:
        os.close(fd)


@nf.component
def work(i: int, sleep_s: float) -> int:
    time.sleep(sleep_s)
    _record(i)
    return i * 10


@nf.workflow
def trial(n: int = 4, sleep_s: float = 0.2) -> int:
    total = 0
    for i in range(n):
        nf.progress(f"step {i}")
        nf.emit(f"c{i};")
        total += work(i, sleep_s)
    nf.emit("end;")
    return total


def expected(n: int) -> int:
    return sum(i * 10 for i in range(n))
