"""Errors from a notebook's own code: said once, with the cell's frames and source lines,
nbflow's frames folded: in-process and from a worker process running the shipped cells."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable

import pytest
from IPython.core.interactiveshell import InteractiveShell

import nbflow as nf
from nbflow.jupyter import display as dsp
from nbflow.runtime.client import Runtime
from nbflow.runtime.run import Run

from .conftest import cell

COMPONENT = 'def explode(x):\n    doubled = 2 * x\n    raise ValueError(f"boom {doubled}")\n'
WORKFLOW = "value = x + 1\nexplode(value)\n"


def define(shell: InteractiveShell) -> None:
    shell.execution_count = 41
    cell(shell, "component", COMPONENT)
    shell.execution_count = 42


def assert_points_at_the_cells(traceback: str) -> None:
    lines = traceback.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    shown = [i for i, line in enumerate(lines) if line.startswith("  Cell In[")]
    assert [lines[i].split(",")[0].strip() for i in shown] == ["Cell In[42]", "Cell In[41]"]
    assert lines[shown[0]].endswith("line 2, in blowup")
    assert lines[shown[0] + 1].strip() == "explode(value)"
    assert lines[shown[1]].endswith("line 3, in explode")
    assert lines[shown[1] + 1].strip() == 'raise ValueError(f"boom {doubled}")'
    assert lines[-1] == "ValueError: boom 6"
    # nbflow's own frames are folded into one line each, never shown
    folds = [line for line in lines if re.fullmatch(r"  \[… \d+ (nbflow frames?|.*)\]", line)]
    assert folds and all("nbflow" in line for line in folds)
    assert "/nbflow/" not in traceback and "<dynamic-code>" not in traceback
    assert "File " not in traceback.split(lines[shown[0]])[1]  # user frames lead, nothing between


def test_an_in_process_cell_error_names_the_cells_and_their_lines(shell: InteractiveShell) -> None:
    define(shell)
    with pytest.raises(ValueError, match=r"^boom 6$"):
        cell(shell, "workflow blowup --x 2 --local --no-display", WORKFLOW)
    run = nf.last_run()
    assert run is not None
    failed = next(e for e in run.events() if e["type"] == "run.failed")
    assert failed["error"] == "ValueError: boom 6" and failed["error_type"] == "ValueError"
    assert_points_at_the_cells(failed["traceback"])
    span = next(s for s in run.trace().state.spans.values() if s.name == "explode")
    assert span.error == "ValueError: boom 6"
    assert str(span.traceback).splitlines()[1:] == [
        "  [… 1 nbflow frame]",
        "  Cell In[41], line 3, in explode",
        '    raise ValueError(f"boom {doubled}")',
        "ValueError: boom 6",
    ]
    shown = dsp.run_bundle(run)[0]
    assert "<b>ValueError: boom 6</b>" in shown["text/html"]
    assert "  error: ValueError: boom 6" in shown["text/plain"]
    assert "ValueError: ValueError" not in shown["text/html"] + shown["text/plain"]


def test_a_worker_process_shows_the_shipped_cells_source(
    shell: InteractiveShell,
    runtime: Runtime,
    worker_process: Callable[..., subprocess.Popen[bytes]],
) -> None:
    worker_process()
    define(shell)
    cell(shell, "workflow blowup --x 2 --no-display", WORKFLOW)
    run = nf.last_run()
    assert isinstance(run, Run) and run.wait(60) == "failed"
    meta = run.meta()
    assert meta["error"] == "ValueError: boom 6" and meta["error_type"] == "ValueError"
    assert_points_at_the_cells(meta["traceback"])
    with pytest.raises(nf.RunFailed) as info:
        run.result()
    assert str(info.value).count("ValueError: boom 6") == 2  # the message, the traceback's end
    assert "ValueError: ValueError" not in str(info.value)
