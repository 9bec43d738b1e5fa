"""One attempt at a run, as the worker executing it keeps track of it."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from .. import _context as ctx


@dataclass
class Active:
    """An attempt this worker is executing (``token`` fences its every write)."""

    run_id: str
    token: str  # "<attempt>/<worker>"
    context: ctx.RunContext
    task: asyncio.Task[Any] | None = None  # the run's ending, on the worker's loop
    inner: asyncio.Task[Any] | None = None  # an async workflow's task, on the runs loop
    handback: bool = False  # handed back to the queue by this worker (drain, restart)
    is_async: bool = False
    cancel_asked_at: float | None = None  # monotonic: when a cancel first reached it
    parent_id: str = ""  # the run that started this one, told when it ends
    started: float = field(default_factory=time.monotonic)

    @property
    def fenced(self) -> bool:
        return self.context.fenced

    @property
    def holds_lease(self) -> bool:
        """Whether this attempt still holds its run (for the heartbeat to renew)."""
        return not (self.handback or self.fenced)

    @property
    def names(self) -> tuple[str, str]:
        """(run id, token), for log lines."""
        return self.run_id, self.token
