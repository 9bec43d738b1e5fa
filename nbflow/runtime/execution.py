"""Explaining why a run could not start on a worker."""

from __future__ import annotations

from ..errors import PayloadRejected


def unloadable(error: Exception) -> PayloadRejected:
    problem = f"{type(error).__name__}: {error}"
    hint = ""
    if isinstance(error, ImportError):
        hint = (
            ": code from a module travels by name and the worker imports it, so install the "
            "module where the workers run (pip install -e .), or start them with --app or "
            "PYTHONPATH, or ship it with each run: cloudpickle.register_pickle_by_value(module)"
        )
    refused = PayloadRejected(
        f"this worker cannot load the run's code or arguments ({problem}){hint}"
    )
    refused.__cause__ = error
    return refused
