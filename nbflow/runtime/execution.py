"""Calling a run's workflow on a worker, and explaining why a run could not start."""

from __future__ import annotations

from typing import Any

from .. import _context as ctx
from .._workflow import Workflow
from ..errors import PayloadRejected


def call_sync(context: ctx.RunContext, wf: Workflow, args: Any, kwargs: Any) -> Any:
    token = ctx.enter(ctx.Frame(context, None, ""))
    try:
        return wf.run_as_step(tuple(args), dict(kwargs))
    finally:
        context.flush_published()
        ctx.leave(token)


async def call_async(context: ctx.RunContext, wf: Workflow, args: Any, kwargs: Any) -> Any:
    token = ctx.enter(ctx.Frame(context, None, ""))
    try:
        return await wf.run_as_step_async(tuple(args), dict(kwargs))
    finally:
        context.flush_published()
        ctx.leave(token)


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
