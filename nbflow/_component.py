"""Components: traced, retried, cached and timed steps.

A component is a plain function wrapped once. Called inside a run it opens a
child span of the current one; called outside any run it runs as a one-span
local run, so every component is testable on its own and still leaves a trace.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import importlib
import inspect
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Generic, SupportsIndex, TypeVar, overload

from . import _context as ctx
from . import constants as c
from ._cache import code_digest
from ._policies import CachePolicy, RetryPolicy, Seconds, timeout
from ._step import Step, arg_formats
from .errors import ConfigError, StepTimeout

KINDS = ("component", "workflow", "llm", "tool")
RetryOption = RetryPolicy | int | dict[str, Any] | None
CacheOption = CachePolicy | float | bool | dict[str, Any] | None


_DERIVED = (
    "signature",
    "positional_names",
    "arg_formats",
)  # rebuilt from fn on unpickling, never shipped


class Component:
    """A function wrapped once: traced as a span, and retried, cached or timed as configured.

    Made by ``@nf.component``. Called outside any run it runs as a one-span local
    run; inside a run it is a child span of the current one. ``with_*`` return
    new components; the original is unchanged.
    """

    kind = "component"
    fn: Callable[..., Any]
    _copied = False  # made by with_*: never the object its module defines

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        retry: RetryOption = None,
        cache: CacheOption = None,
        timeout_s: Seconds | None = None,
        redact: Iterable[str] = (),
        kind: str | None = None,
    ) -> None:
        if isinstance(fn, Component):
            fn = fn.fn
        if not callable(fn):
            raise TypeError(
                f"nbflow.{type(self).__name__.lower()} decorates a function, got {fn!r}"
            )
        if kind is not None and kind not in KINDS:
            raise ConfigError(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
        self.fn = fn
        self.name = name or getattr(fn, "__name__", None) or type(fn).__name__
        self.kind = kind or self.kind
        self.retry = _retry_policy(retry)
        self.cache = _cache_policy(cache)
        self.timeout_s = timeout(timeout_s)
        self.redact = tuple(redact) if not isinstance(redact, str) else (redact,)
        self.is_async = inspect.iscoroutinefunction(fn)
        self.code_digest = code_digest(fn)
        self.signature = _signature(fn)
        self.positional_names = _positional_names(self.signature)
        self.arg_formats = arg_formats(self.positional_names)
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"<nbflow {self.kind} {self.name!r}>"

    # --- shipping ------------------------------------------------------------
    def __reduce_ex__(self, protocol: SupportsIndex) -> Any:
        where = self.module_reference()
        if where is not None:
            return (_import_component, where)
        return super().__reduce_ex__(protocol)

    def module_reference(self) -> tuple[str, str] | None:
        """(module, name) when this object is defined at the top level of an importable
        module: it is then pickled by reference, as pickle treats functions, and the
        receiving process imports the module. Copies made by ``with_*`` and modules
        registered with ``cloudpickle.register_pickle_by_value`` are pickled by value."""
        module_name = self.__dict__.get("__module__")
        name = self.__dict__.get("__qualname__")
        if self._copied or not module_name or not name or module_name == "__main__":
            return None
        module = sys.modules.get(module_name)
        if getattr(module, name, None) is not self or _registered_by_value(module_name):
            return None
        return module_name, name

    # What is derived from fn is rebuilt on unpickling, never shipped.
    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in _DERIVED}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.signature = _signature(self.fn)
        self.positional_names = _positional_names(self.signature)
        self.arg_formats = arg_formats(self.positional_names)

    # --- fluent configuration: each returns a new component ----------------
    def _replace(self, **changes: Any) -> Component:
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.__dict__.update(changes)
        clone._copied = True
        return clone

    def with_retry(
        self,
        attempts: int = c.RETRY_ATTEMPTS,
        *,
        backoff: str = c.RETRY_BACKOFF,
        initial_s: Seconds = c.RETRY_INITIAL_S,
        max_s: Seconds = c.RETRY_MAX_S,
        jitter: float = c.RETRY_JITTER,
        on: type[BaseException] | tuple[type[BaseException], ...] = (Exception,),
    ) -> Component:
        """A copy retried on ``on`` errors: ``attempts`` tries in all, backing off between."""
        policy = RetryPolicy.build(
            attempts=attempts,
            backoff=backoff,
            initial_s=initial_s,
            max_s=max_s,
            jitter=jitter,
            on=on,
        )
        return self._replace(retry=policy)

    def with_cache(
        self,
        ttl_s: Seconds | None = None,
        *,
        key: Callable[..., Any] | None = None,
        ignore: tuple[str, ...] | list[str] = (),
    ) -> Component:
        """A copy whose results are cached by arguments and code, for ``ttl_s`` or for ever."""
        return self._replace(cache=CachePolicy.build(ttl_s=ttl_s, key=key, ignore=ignore))

    def with_timeout(self, timeout_s: Seconds) -> Component:
        """A copy that raises StepTimeout when a call runs past ``timeout_s``."""
        if timeout_s is None:
            raise ConfigError("with_timeout needs a number of seconds > 0")
        return self._replace(timeout_s=timeout(timeout_s))

    # --- calling ----------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        parent = ctx.current()
        if parent is None:
            from ._local import run_local

            return run_local(self, args, kwargs)
        if self.is_async:
            return self.run_as_step_async(args, kwargs)
        return self.run_as_step(args, kwargs, parent)

    def run_as_step(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], parent: ctx.Frame | None = None
    ) -> Any:
        """Run as a span of ``parent`` (the current span by default): retried, cached,
        timed, replayed if recorded."""
        step = Step.open(self, args, kwargs, parent)
        if step.done:
            return step.value
        attempt = 1
        while True:
            token = ctx.enter(step)
            try:
                if self.timeout_s is None:
                    value = self.fn(*args, **kwargs)
                else:
                    value = _call_with_timeout(self, args, kwargs)
            except BaseException as error:
                delay = step.failed(error, attempt)
                if delay is None:
                    raise
                _sleep(delay)
                attempt += 1
                continue
            finally:
                ctx.leave(token)
            pending = step.succeeded(value, attempt)
            if pending is not None:
                pending.result()
            return value

    async def run_as_step_async(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """``run_as_step`` for an async function."""
        step = Step.open(self, args, kwargs)
        if step.done:
            return step.value
        attempt = 1
        while True:
            token = ctx.enter(step)
            try:
                value = await self._invoke_async(args, kwargs)
            except BaseException as error:
                delay = step.failed(error, attempt)
                if delay is None:
                    raise
                if delay > 0:
                    await asyncio.sleep(delay)
                attempt += 1
                continue
            finally:
                ctx.leave(token)
            pending = step.succeeded(value, attempt)
            if pending is not None:
                await asyncio.wrap_future(pending)
            return value

    async def _invoke_async(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self.timeout_s is None:
            return await self.fn(*args, **kwargs)
        try:
            async with asyncio.timeout(self.timeout_s) as scope:
                return await self.fn(*args, **kwargs)
        except TimeoutError:
            if scope.expired():
                raise StepTimeout(f"{self.name} timed out after {self.timeout_s:g} s") from None
            raise


def _import_component(module_name: str, name: str) -> Component:
    found = getattr(importlib.import_module(module_name), name, None)
    if not isinstance(found, Component):
        raise TypeError(f"{module_name}.{name} is not an nbflow component")
    return found


def _registered_by_value(module_name: str) -> bool:
    import cloudpickle

    registered = cloudpickle.list_registry_pickle_by_value()
    parts = module_name.split(".")
    return any(".".join(parts[:i]) in registered for i in range(1, len(parts) + 1))


def _sleep(delay_s: float) -> None:
    if delay_s > 0:
        time.sleep(delay_s)


def _call_with_timeout(comp: Component, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    # A thread cannot be killed: a sync step that overruns is abandoned (it
    # finishes in the background, its result dropped) and the caller moves on.
    outcome: list[Any] = []
    context = contextvars.copy_context()

    def target() -> None:
        try:
            outcome.append((True, context.run(comp.fn, *args, **kwargs)))
        except BaseException as error:
            outcome.append((False, error))

    thread = threading.Thread(target=target, name=f"nbflow-{comp.name}", daemon=True)
    thread.start()
    thread.join(comp.timeout_s)
    if not outcome:
        frame = ctx.current()
        if frame is not None:  # the worker watches it once the run has ended
            frame.run.abandoned.append(thread)
        raise StepTimeout(f"{comp.name} timed out after {comp.timeout_s:g} s")
    ok, value = outcome[0]
    if ok:
        return value
    raise value


def _signature(fn: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


def _positional_names(signature: inspect.Signature | None) -> tuple[str, ...] | None:
    """Parameter names when all of them can be passed by position, else None."""
    if signature is None:
        return None
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    params = signature.parameters.values()
    if any(p.kind not in positional for p in params):
        return None
    return tuple(p.name for p in params)


def _retry_policy(value: RetryOption) -> RetryPolicy | None:
    if value is None or isinstance(value, RetryPolicy):
        return value
    if isinstance(value, bool):
        raise ConfigError(
            f"retry= takes attempts, a dict of with_retry options or a RetryPolicy, got {value!r}"
        )
    if isinstance(value, int):
        return RetryPolicy.build(attempts=value)
    if isinstance(value, dict):
        return RetryPolicy.build(**value)
    raise ConfigError(
        f"retry= takes attempts, a dict of with_retry options or a RetryPolicy, got {value!r}"
    )


def _cache_policy(value: CacheOption) -> CachePolicy | None:
    if value is None or value is False or isinstance(value, CachePolicy):
        return value or None
    if value is True:
        return CachePolicy.build()
    if isinstance(value, int | float):
        return CachePolicy.build(ttl_s=value)
    if isinstance(value, dict):
        return CachePolicy.build(**value)
    raise ConfigError(
        "cache= takes a ttl in seconds, True, a dict of with_cache options "
        f"or a CachePolicy, got {value!r}"
    )


C = TypeVar("C", bound=Component)


class Decorator(Generic[C]):
    """``@nf.component`` and ``@nf.workflow``: used bare, or called with options first."""

    def __init__(self, cls: type[C], doc: str) -> None:
        self._cls = cls
        self.__doc__ = doc
        self.__name__ = self.__qualname__ = cls.kind
        self.__module__ = "nbflow"

    def __repr__(self) -> str:
        return f"<nbflow.{self.__name__} decorator>"

    @overload
    def __call__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = ...,
        retry: RetryOption = ...,
        cache: CacheOption = ...,
        timeout_s: Seconds | None = ...,
        redact: Iterable[str] = ...,
    ) -> C: ...

    @overload
    def __call__(
        self,
        fn: None = ...,
        *,
        name: str | None = ...,
        retry: RetryOption = ...,
        cache: CacheOption = ...,
        timeout_s: Seconds | None = ...,
        redact: Iterable[str] = ...,
    ) -> Callable[[Callable[..., Any]], C]: ...

    def __call__(
        self,
        fn: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        retry: RetryOption = None,
        cache: CacheOption = None,
        timeout_s: Seconds | None = None,
        redact: Iterable[str] = (),
    ) -> C | Callable[[Callable[..., Any]], C]:
        def make(f: Callable[..., Any]) -> C:
            return self._cls(
                f, name=name, retry=retry, cache=cache, timeout_s=timeout_s, redact=redact
            )

        return make if fn is None else make(fn)


component = Decorator(
    Component, "Make ``fn`` a component: ``@nf.component`` or ``@nf.component(retry=...)``."
)
