"""Importing an ``--app`` module, and showing its failure as the user's own error:
their file and line, without the frames of nbflow and of the import machinery."""

from __future__ import annotations

from ._tracebacks import format_traceback
from .errors import ConfigError, NbflowError


def import_app(name: str) -> None:
    """Import the ``--app`` module (before anything starts), or raise ConfigError
    with its failure as Python would show it, less nbflow's frames."""
    from .runtime.catalog import load_app

    try:
        load_app(name)
    except NbflowError:
        raise
    except Exception as error:
        shown = format_traceback(error, say_folded=False).rstrip()
        raise ConfigError(f"cannot import the app module {name!r}:\n{shown}") from None
