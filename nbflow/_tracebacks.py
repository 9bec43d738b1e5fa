"""Tracebacks as runs keep them: the user's frames with their source lines, nbflow's folded.

A run's traceback is read in a notebook, far from the worker that made it. It
leads with the user's code: each run of nbflow's own frames (with the standard
library frames between them: threads, futures, the event loop) becomes one
line, ``[… 4 nbflow frames]``. A notebook cell is named as IPython names it,
``Cell In[5]``, and its source lines are shown wherever the code runs: a
worker that unpickles a cell's code registers the cell's source here (see
``runtime.codeship``).
"""

from __future__ import annotations

import linecache
import os
import sys
import sysconfig
import traceback
from pathlib import Path
from typing import Any

MAX_TRACEBACK_CHARS = 8_000
_NBFLOW = str(Path(__file__).resolve().parent) + os.sep
_STDLIB = tuple(
    {os.path.realpath(sysconfig.get_paths()[k]) + os.sep for k in ("stdlib", "platstdlib")}
)
_labels: dict[str, str] = {}


def format_traceback(error: BaseException, *, say_folded: bool = True) -> str:
    """``error``'s traceback, nbflow's frames folded (into a line that says how many, or
    into nothing); the end of it if long."""
    shown = traceback.TracebackException.from_exception(error)
    _fold(shown, set(), say_folded)
    text = "".join(shown.format())
    return text if len(text) <= MAX_TRACEBACK_CHARS else "…" + text[-MAX_TRACEBACK_CHARS:]


def register_source(filename: str, lines: list[str], label: str = "") -> None:
    """Keep ``lines`` as the source of ``filename`` (code with no file here), shown as ``label``."""
    linecache.cache[filename] = (sum(map(len, lines)), None, lines, filename)
    if label:
        _labels[filename] = label


def label(filename: str) -> str:
    """How a traceback names a file: a notebook cell as ``Cell In[N]``, else as it is."""
    known = _labels.get(filename)
    if known:
        return known
    number = _cell_number(filename)
    return filename if number is None else f"Cell In[{number}]"


def _cell_number(filename: str) -> int | None:
    # IPython names each cell's code after the cell's execution count; only a kernel
    # (or IPython) that is already running knows it.
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    names = getattr(getattr(shell, "compile", None), "_filename_map", None)
    number = names.get(filename) if isinstance(names, dict) else None
    return number if isinstance(number, int) else None


def _fold(shown: traceback.TracebackException, seen: set[int], say_folded: bool) -> None:
    if id(shown) in seen:
        return
    seen.add(id(shown))
    shown.stack = _Folded(shown.stack)
    shown.stack.say_folded = say_folded
    linked = [shown.__cause__, shown.__context__, *(getattr(shown, "exceptions", None) or [])]
    for other in linked:
        if other is not None:
            _fold(other, seen, say_folded)


def _kind(filename: str) -> str:
    if filename.startswith(_NBFLOW):
        return "nbflow"
    if filename.startswith("<frozen ") or os.path.realpath(filename).startswith(_STDLIB):
        return "stdlib"
    return "user"


class _Folded(traceback.StackSummary):
    """A stack that formats nbflow's runs of frames as one line each."""

    say_folded = True

    def format(self, **options: Any) -> list[str]:  # options: colorize, since Python 3.13
        kinds = [_kind(frame.filename) for frame in self]
        if "nbflow" not in kinds:
            return [self._frame(frame, options) for frame in self]
        lines: list[str] = []
        hidden: list[str] = []
        for i, frame in enumerate(self):
            if kinds[i] == "user" or (
                kinds[i] == "stdlib" and not hidden and _leads_to_user(kinds, i)
            ):
                lines += self._summary(hidden)
                hidden = []
                lines.append(self._frame(frame, options))
            else:
                hidden.append(kinds[i])
        return lines + self._summary(hidden)

    def _summary(self, hidden: list[str]) -> list[str]:
        if not hidden or not self.say_folded:
            return []
        many = "s" if len(hidden) > 1 else ""
        what = f"nbflow frame{many}"
        if "stdlib" in hidden:
            what = f"frame{many} of nbflow and the standard library"
        return [f"  [… {len(hidden)} {what}]\n"]

    def _frame(self, frame: traceback.FrameSummary, options: dict[str, Any]) -> str:
        text = self.format_frame_summary(frame, **options)
        name = label(frame.filename)
        if name == frame.filename:
            return text
        return text.replace(f'File "{frame.filename}", line', f"{name}, line", 1)


def _leads_to_user(kinds: list[str], start: int) -> bool:
    """Whether the standard library frames from ``start`` on lead to user code, not to
    nbflow: a user's own call into the standard library is theirs to see."""
    for kind in kinds[start:]:
        if kind != "stdlib":
            return kind == "user"
    return True
