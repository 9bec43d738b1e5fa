"""Importing an ``--app`` module, and showing its failure as the user's own error:
their file and line, without the frames of nbflow and of the import machinery."""

from __future__ import annotations

import importlib
import traceback
from pathlib import Path

from .errors import ConfigError, NbflowError

_INTERNALS = (Path(__file__).resolve().parent, Path(importlib.__file__).resolve().parent)


def import_app(name: str) -> None:
    """Import the ``--app`` module (before anything starts), or raise ConfigError
    with its failure as Python would show it, less nbflow's frames."""
    from .runtime.catalog import load_app

    try:
        load_app(name)
    except NbflowError:
        raise
    except Exception as error:
        raise ConfigError(
            f"cannot import the app module {name!r}:\n{user_traceback(error)}"
        ) from None


def user_traceback(error: BaseException) -> str:
    """``error``'s traceback without the frames of nbflow and of the import machinery."""
    shown = traceback.TracebackException.from_exception(error)
    _drop_internal_frames(shown, set())
    return "".join(shown.format()).rstrip()


def _drop_internal_frames(shown: traceback.TracebackException, seen: set[int]) -> None:
    if id(shown) in seen:
        return
    seen.add(id(shown))
    shown.stack = traceback.StackSummary.from_list(
        [frame for frame in shown.stack if not _internal(frame.filename)]
    )
    for linked in (shown.__cause__, shown.__context__):
        if linked is not None:
            _drop_internal_frames(linked, seen)


def _internal(filename: str) -> bool:
    if filename.startswith("<frozen "):
        return True
    path = Path(filename).resolve()
    return any(path.is_relative_to(root) for root in _INTERNALS)
