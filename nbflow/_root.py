"""Running a component as the root span of a run: the one way every run runs its
workflow, in-process (``nf.last_run()``) and on a worker alike."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import _context as ctx

if TYPE_CHECKING:
    from ._component import Component


def run_root(
    context: ctx.RunContext, comp: Component, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Run ``comp`` as the root span of the run ``context``; its value, or its error raised.

    States the run published are sent before it returns or raises (the log keeps them
    before the run's end); the caller records the end itself.
    """
    root = ctx.root_frame(context)
    token = ctx.enter(root)
    try:
        return comp.run_as_step(args, kwargs, root)
    finally:
        context.flush_published()
        ctx.leave(token)


async def run_root_async(
    context: ctx.RunContext, comp: Component, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """``run_root`` for an async component."""
    token = ctx.enter(ctx.root_frame(context))
    try:
        return await comp.run_as_step_async(args, kwargs)
    finally:
        context.flush_published()
        ctx.leave(token)
