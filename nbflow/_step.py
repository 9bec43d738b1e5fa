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
from ._preview import MAX_ITEMS, fresh_preview, preview, truncate
from ._spanstate import CACHE_KEY
from ._tracebacks import format_traceback
from .constants import MAX_PREVIEW_CHARS
from .errors import AttemptFenced, CacheKeyError, RunCancelled, Suspend

if TYPE_CHECKING:
    from ._component import Component

_SCALARS = frozenset({str, int, float, bool, type(None)})
_AS_IS = frozenset({int, float, bool, type(None)})  # values a preview keeps as they are
_ARG_HASHER = hashlib.blake2b(digest_size=6)


class Step(ctx.Frame):
    """One call of a component inside a run: the span its code runs in (a Frame, where
    child spans attach), its events, its cache entry and its record for replays."""

    __slots__ = ("cache_key", "comp", "done", "parent_id", "value")

    def __init__(
        self, comp: Component, run: ctx.RunContext, step: str, parent_id: str | None
    ) -> None:
        # Frame.__init__'s fields, set here: one call less on every traced call.
        self.run = run
        self.span_id = run.span_id(step)
        self.step = step
        self._attrs = None
        self._children = None
        self._said = 0
        self._calls = 0
        self.comp = comp
        self.parent_id = parent_id
        self.cache_key: str | None = None
        self.done = False
        self.value: Any = None

    @classmethod
    def open(
        cls,
        comp: Component,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        parent: ctx.Frame | None = None,
    ) -> Step:
        """The step of a call of ``comp`` under ``parent`` (the current span by default):
        started, or done already (replayed from the memo, or a cache hit)."""
        if parent is None:
            parent = ctx.current()
            assert parent is not None
        run = parent.run
        if run.cancelled.is_set():
            run.check()
        bound, digest, shown = _arguments(comp, args, kwargs)
        if run.runtime is None:  # what call_step answers for a run that is never replayed
            key = parent.child_step(comp.name, digest)
        else:
            key = run.call_step(parent, comp.name, digest)
        step = cls(comp, run, key, parent.span_id)
        if run.memo is not None:
            step.done, step.value = run.memo.lookup(step.step)
            if step.done:
                return step
        if comp.cache is not None:
            step.cache_key = _cache_key(comp, args, kwargs, bound)
            step.attrs[CACHE_KEY] = step.cache_key  # the inspector shows hit or miss
        step.start(shown)
        if step.cache_key is not None:
            step._try_cache()
        return step

    def start(self, shown: Any) -> None:
        """Log the span's start, ``shown`` as its input."""
        comp = self.comp
        self.run.sink.emit(
            {
                "type": ev.SPAN_STARTED,
                "ts": time.time(),
                "span_id": self.span_id,
                "parent_id": self.parent_id,
                "name": comp.name,
                "kind": comp.kind,
                "step": self.step,
                "input": shown,
            }
        )

    def _try_cache(self) -> None:
        assert self.cache_key is not None
        hit, value = self.run.cache.get(self.cache_key)
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
            and not self.run.cancelled.is_set()
        ):
            delay = policy.delay_s(attempt)
            self.retried(attempt, error, delay)
            return delay
        self._finish(
            "error",
            attempts=attempt,
            error=describe_error(error),
            error_type=type(error).__name__,
            traceback=format_traceback(error),
        )
        return None

    def retried(self, attempt: int, error: BaseException, delay_s: float, **fields: Any) -> None:
        """Log that ``attempt`` failed with ``error`` and the next one starts after
        ``delay_s``; ``fields`` add to the event (an llm call names its providers)."""
        self.run.emit(
            ev.make(
                ev.SPAN_RETRY,
                span_id=self.span_id,
                attempt=attempt,
                error=describe_error(error),
                error_type=type(error).__name__,
                traceback=format_traceback(error),
                delay_s=round(delay_s, 4),
                **fields,
            )
        )

    def succeeded(self, value: Any, attempt: int) -> Future[None] | None:
        """Finish ok (``value`` cached if so configured); a future that is done once the
        result is durable, or None when there is nothing to wait for."""
        run, comp = self.run, self.comp
        if run.publisher is not None:
            run.flush_published()
        if self.cache_key is not None:
            assert comp.cache is not None
            run.cache.set(self.cache_key, value, comp.cache.ttl_s)
        # What finished_event("ok", ...) makes, written out: this ends every call.
        event = {
            "type": ev.SPAN_FINISHED,
            "ts": time.time(),
            "span_id": self.span_id,
            "status": "ok",
            "attempts": attempt,
            "output": value if type(value) in _AS_IS else preview(value, redact=comp.redact),
            "cached": False,
        }
        if self._attrs:
            event["attrs"] = dict(self._attrs)
        if self.parent_id is None:
            # The run's own span: its result is recorded with the run's end, so
            # there is no step to commit and nothing to wait for.
            run.emit(event)
            return None
        return run.sink.commit_step(event, self.step, value)

    def _preview(self, value: Any) -> Any:
        return preview(value, redact=self.comp.redact)

    def _finish(self, status: str, **fields: Any) -> None:
        self.run.emit(self.finished_event(status, **fields))

    def finished_event(self, status: str, **fields: Any) -> ev.Event:
        """The span's ``span.finished`` event: ``status`` and ``fields``, and its attrs."""
        event = {
            "type": ev.SPAN_FINISHED,
            "ts": time.time(),
            "span_id": self.span_id,
            "status": status,
            **fields,
        }
        if "cached" not in fields:
            event["cached"] = False
        if self._attrs:
            event["attrs"] = dict(self._attrs)
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


def _arguments(
    comp: Component, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[dict[str, Any], str, Any]:
    """A call's bound arguments, their ``arg_digest`` and their preview for the span."""
    names, formats = comp.positional_names, comp.arg_formats
    if names is not None and formats is not None and not kwargs and len(args) <= len(names):
        # The common case, on every call: plain values passed by position. The digest
        # hashes the text arg_digest hashes, made in one step; the arguments are their
        # own preview when a preview would copy them unchanged.
        as_is = not comp.redact and len(args) <= MAX_ITEMS
        for value in args:
            kind = type(value)
            if kind not in _SCALARS:
                break
            if kind is str and len(value) > MAX_PREVIEW_CHARS:
                as_is = False
        else:
            # one argument, the commonest call, without zip's cost
            bound = {names[0]: args[0]} if len(args) == 1 else dict(zip(names, args, strict=False))
            h = _ARG_HASHER.copy()
            h.update((formats[len(args)] % args).encode())
            return bound, h.hexdigest(), bound if as_is else fresh_preview(bound, comp.redact)
    bound = bound_arguments(comp, args, kwargs)
    return bound, arg_digest(bound), fresh_preview(bound, comp.redact)


def arg_formats(names: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """For calls passing the first k of ``names`` by position, a %-format at index k of
    the text that ``arg_digest`` hashes (``repr(tuple(bound.items()))``)."""
    if names is None:
        return None
    formats = []
    for k in range(len(names) + 1):
        items = [f"({name!r}, %r)" for name in names[:k]]  # identifiers hold no %
        formats.append(f"({items[0]},)" if k == 1 else f"({', '.join(items)})")
    return tuple(formats)


def arg_digest(bound: dict[str, Any]) -> str:
    for value in bound.values():
        if type(value) not in _SCALARS:
            break
    else:
        # The common case, on every call: repr is exact and stable for these types and
        # far cheaper than canonical JSON; it never starts like the JSON form below.
        h = _ARG_HASHER.copy()  # copying a made hasher costs less than making one
        h.update(repr(tuple(bound.items())).encode())
        return h.hexdigest()
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
