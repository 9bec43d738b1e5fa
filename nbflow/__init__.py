"""nbflow: prototype and run long-lived AI-agent workflows from Jupyter."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ._component import Component, component
from ._local import LocalRun, last_run
from ._state import publish
from ._testing import set_testing
from ._tool import Tool, call_tools, call_tools_async, tool, tool_definitions
from ._trace import Trace
from ._version import __version__
from ._waits import gather, sleep, sleep_until, wait_for_input
from ._workflow import Workflow, current_run_id, emit, progress, workflow
from .errors import (
    ArgumentsTooLarge,
    CacheKeyError,
    ConfigError,
    InputRejected,
    InputTimeout,
    NbflowError,
    NondeterminismError,
    PayloadRejected,
    ResultNotKept,
    RunCancelled,
    RunFailed,
    RunNotFound,
    RuntimeUnavailable,
    StepTimeout,
    StructuredOutputError,
    ToolArgumentsError,
)

if TYPE_CHECKING:
    from datetime import datetime

    import pandas as pd

    from . import llm as openai
    from .runtime.client import Runtime
    from .runtime.run import Run


def connect(url: str | None = None, **options: Any) -> Runtime:
    """Connect to a runtime: ``url`` or ``NBFLOW_REDIS_URL``, else the embedded default."""
    from .runtime.client import connect as _connect

    return _connect(url, **options)


def attach(run_id: str) -> Run:
    """A handle on an existing run of the current runtime."""
    from .runtime.client import get_runtime

    return get_runtime().attach(run_id)


def runs(
    *,
    limit: int = 100,
    cursor: str | None = None,
    status: str | tuple[str, ...] | None = None,
    workflow: str | None = None,
    since: float | datetime | None = None,
    parent: str | None = None,
    notebook: str | None = None,
) -> pd.DataFrame:
    """The runtime's newest ``limit`` runs matching the filters, newest first, as a
    DataFrame; pass its ``attrs["next_cursor"]`` as ``cursor`` for the next page."""
    from .runtime.client import get_runtime

    return get_runtime().runs(
        limit=limit, cursor=cursor, status=status, workflow=workflow, since=since,
        parent=parent, notebook=notebook,
    )  # fmt: skip


def wait(runs: Iterable[Run], *, timeout_s: float | None = None) -> list[str]:
    """Block until every run in ``runs`` has ended; their statuses, in the same order.

    Cheaper than ``run.wait()`` on each: one round trip reads every status, and
    one blocking read follows the logs of many unfinished runs. A failed or
    cancelled run is a status here, not an exception (``run.result()`` raises).
    TimeoutError if some have not ended within ``timeout_s``.
    """
    from .runtime.waiting import wait_all

    return wait_all(runs, timeout_s)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext nbflow``: the ``%%component``, ``%%workflow`` and ``%nbflow`` magics."""
    from .jupyter.magics import load_ipython_extension as load

    load(ipython)


def __getattr__(name: str) -> Any:
    # ``nf.openai.OpenAI(...)``: the traced client, imported only when first used;
    # the runtime's classes too, since they import redis.
    if name == "openai":
        from . import llm

        return llm
    if name == "Run":
        from .runtime.run import Run

        return Run
    if name == "Runtime":
        from .runtime.client import Runtime

        return Runtime
    raise AttributeError(f"module 'nbflow' has no attribute {name!r}")


__all__ = [
    "ArgumentsTooLarge",
    "CacheKeyError",
    "Component",
    "ConfigError",
    "InputRejected",
    "InputTimeout",
    "LocalRun",
    "NbflowError",
    "NondeterminismError",
    "PayloadRejected",
    "ResultNotKept",
    "Run",
    "RunCancelled",
    "RunFailed",
    "RunNotFound",
    "Runtime",
    "RuntimeUnavailable",
    "StepTimeout",
    "StructuredOutputError",
    "Tool",
    "ToolArgumentsError",
    "Trace",
    "Workflow",
    "__version__",
    "attach",
    "call_tools",
    "call_tools_async",
    "component",
    "connect",
    "current_run_id",
    "emit",
    "gather",
    "last_run",
    "openai",
    "progress",
    "publish",
    "runs",
    "set_testing",
    "sleep",
    "sleep_until",
    "tool",
    "tool_definitions",
    "wait",
    "wait_for_input",
    "workflow",
]
