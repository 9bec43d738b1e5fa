"""One call of a component inside a run: its span's events, cache and memo."""

from __future__ import annotations

import asyncio
import hashlib
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from . import _context as ctx
from . import _events as ev
from ._cache import canonical, digest
from ._preview import preview, truncate
from ._spanstate import CACHE_KEY
from ._tracebacks import format_traceback
from .errors import AttemptFenced, CacheKeyError, RunCancelled, Suspend

if TYPE_CHECKING:
    from ._component import Component

_SCALARS = frozenset({str, int, float, bool, type(None)})


class Step:
    __slots__ = ("cache_key", "comp", "done", "frame", "parent_id", "value")

    def __init__(self, comp: Component, frame: ctx.Frame, parent_id: str | None) -> None:
        self.comp = comp
        self.frame = frame
        self.parent_id = parent_id
        self.cache_key: str | None = None
        self.done = False
        self.value: Any = None

    @classmethod
    def open(cls, comp: Component, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Step:
        parent = ctx.current()
        assert parent is not None
        run = parent.run
        run.check()
        bound = bound_arguments(comp, args, kwargs)
        step_key = run.call_step(parent, comp.name, arg_digest(bound))
        frame = ctx.Frame(run, ctx.span_id_for(run.run_id, step_key), step_key)
        step = cls(comp, frame, parent.span_id)
        if run.memo is not None:
            step.done, step.value = run.memo.lookup(step_key)
            if step.done:
                return step
        if comp.cache is not None:
            step.cache_key = _cache_key(comp, args, kwargs, bound)
            frame.attrs[CACHE_KEY] = step.cache_key  # the inspector shows hit or miss
        step._start(bound)
        if step.cache_key is not None:
            step._try_cache()
        return step

    def _start(self, bound: dict[str, Any]) -> None:
        frame, comp = self.frame, self.comp
        frame.run.sink.emit(
            {
                "type": ev.SPAN_STARTED,
                "ts": time.time(),
                "span_id": frame.span_id,
                "parent_id": self.parent_id,
                "name": comp.name,
                "kind": comp.kind,
                "step": frame.step,
                "input": self._preview(bound),
            }
        )

    def _try_cache(self) -> None:
        assert self.cache_key is not None
        hit, value = self.frame.run.cache.get(self.cache_key)
        if hit:
            self.done, self.value = True, value
            self._finish("ok", attempts=0, cached=True, output=self._preview(value))

    def failed(self, error: BaseException, attempt: int) -> float | None:
        """Record a failed attempt; the back-off delay if it is retried, else None."""
        if isinstance(error, AttemptFenced | Suspend):
            # the attempt ends here (it lost the run, or waits): the span is not over
            raise error
        if isinstance(error, RunCancelled | asyncio.CancelledError | KeyboardInterrupt):
            self._finish("cancelled", attempts=attempt, error=describe_error(error))
            return None
        policy = self.comp.retry
        if (
            policy is not None
            and attempt < policy.attempts
            and policy.retries(error)
            and not self.frame.run.cancelled.is_set()
        ):
            delay = policy.delay_s(attempt)
            self.frame.run.emit(
                ev.make(
                    ev.SPAN_RETRY,
                    span_id=self.frame.span_id,
                    attempt=attempt,
                    error=describe_error(error),
                    error_type=type(error).__name__,
                    traceback=format_traceback(error),
                    delay_s=round(delay, 4),
                )
            )
            return delay
        self._finish(
            "error",
            attempts=attempt,
            error=describe_error(error),
            error_type=type(error).__name__,
            traceback=format_traceback(error),
        )
        return None

    def succeeded(self, value: Any, attempt: int) -> Future[None] | None:
        run = self.frame.run
        run.flush_published()
        if self.cache_key is not None:
            assert self.comp.cache is not None
            run.cache.set(self.cache_key, value, self.comp.cache.ttl_s)
        event = self._event("ok", attempts=attempt, output=self._preview(value))
        if self.parent_id is None:
            # The run's own span: its result is recorded with the run's end, so
            # there is no step to commit and nothing to wait for.
            run.emit(event)
            return None
        return run.sink.commit_step(event, self.frame.step, value)

    def _preview(self, value: Any) -> Any:
        return preview(value, redact=self.comp.redact)

    def _finish(self, status: str, **fields: Any) -> None:
        self.frame.run.emit(self._event(status, **fields))

    def _event(self, status: str, **fields: Any) -> ev.Event:
        event = {
            "type": ev.SPAN_FINISHED,
            "ts": time.time(),
            "span_id": self.frame.span_id,
            "status": status,
            **fields,
        }
        if "cached" not in fields:
            event["cached"] = False
        if self.frame.attrs:
            event["attrs"] = dict(self.frame.attrs)
        return event


def bound_arguments(
    comp: Component, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any]:
    names = comp.positional_names
    if names is not None and not kwargs and len(args) <= len(names):
        return dict(zip(names, args, strict=False))  # bind_partial's answer, without its cost
    if comp.signature is not None:
        try:
            return dict(comp.signature.bind_partial(*args, **kwargs).arguments)
        except TypeError:
            pass  # the call itself will raise the user's TypeError, recorded on the span
    return {"args": list(args), **kwargs}


def arg_digest(bound: dict[str, Any]) -> str:
    for value in bound.values():
        if type(value) not in _SCALARS:
            break
    else:
        # The common case, on every call: repr is exact and stable for these types and
        # far cheaper than canonical JSON; it never starts like the JSON form below.
        text = repr(tuple(bound.items()))
        return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()
    try:
        return digest({k: canonical(v, k) for k, v in bound.items()})[:12]
    except CacheKeyError:
        return ""  # unhashable arguments: steps are told apart by call order alone


def _cache_key(
    comp: Component, args: tuple[Any, ...], kwargs: dict[str, Any], bound: dict[str, Any]
) -> str:
    policy = comp.cache
    assert policy is not None
    if policy.key is not None:
        material = canonical(policy.key(*args, **kwargs), f"{comp.name} cache key")
    else:
        kept = {k: v for k, v in bound.items() if k not in policy.ignore}
        material = {k: canonical(v, k) for k, v in kept.items()}
    return digest([comp.name, comp.code_digest, material])


def describe_error(error: BaseException) -> str:
    """An error as spans and run events show it: ``Type: message``, cut if long."""
    text = str(error)
    return truncate(f"{type(error).__name__}: {text}" if text else type(error).__name__)
