"""A handle on one run of a runtime: its status, result, log and trace."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .. import _events as ev
from .. import constants as c
from .._policies import Backoff
from .._preview import preview
from ..errors import (
    InputRejected,
    ResultNotKept,
    RunCancelled,
    RunFailed,
    RunNotFound,
    RuntimeUnavailable,
)
from . import codeship
from .connection import SyncRedis
from .protocol import decode_entry, decode_meta, encode_event

if TYPE_CHECKING:
    from .._trace import Trace
    from .client import Runtime

READ_BATCH = 1_000
BLOCK_MS = 1_000
# A reader waiting on a run rides out a server restart or failover this long.
RECONNECT_PATIENCE_S = 60.0
_RECONNECT_FIRST_S, _RECONNECT_MAX_S = 0.1, 2.0

log = logging.getLogger("nbflow.client")
T = TypeVar("T")


class Run:
    """A handle on one run of a runtime."""

    def __init__(self, runtime: Runtime, run_id: str) -> None:
        self.runtime = runtime
        self.id = run_id

    def __repr__(self) -> str:
        return f"<nbflow run {self.id}>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        from ..jupyter.view import mimebundle

        return mimebundle(self, include, exclude)

    def watch(self) -> Any:
        """Show this run live in the notebook: its whole history, then updates until it ends."""
        from ..jupyter.view import watch

        return watch(self)

    @property
    def _r(self) -> SyncRedis:
        return self.runtime.redis

    def meta(self) -> dict[str, Any]:
        """The run's metadata (status, workflow, times, ...); RunNotFound if it is gone."""
        raw = self._r.hgetall(c.run_meta(self.id))
        if not raw:
            raise RunNotFound(f"no run {self.id!r} (unknown, or expired after its retention)")
        return decode_meta(raw)

    def status(self) -> str:
        """The run's status now: queued, running, waiting, succeeded, failed or cancelled."""
        value = self._r.hget(c.run_meta(self.id), "status")
        if value is None:
            raise RunNotFound(f"no run {self.id!r} (unknown, or expired after its retention)")
        return str(value.decode())

    @property
    def workflow(self) -> str:
        """The name of the workflow this run runs."""
        return str(self.meta().get("workflow", ""))

    def cancel(self) -> str:
        """Ask the run to stop at its next component boundary (a queued or waiting run
        ends at once), and its child runs with it; what happened to this run."""
        requested = ev.make(ev.RUN_CANCEL_REQUESTED)
        cancelled = ev.make(ev.RUN_CANCELLED, reason="cancelled")
        keys = [c.run_meta(self.id), c.run_log(self.id), c.run_steps(self.id)]
        if not self.runtime.cluster:
            keys.append(c.WAKEUPS)
        outcome = self.runtime.cancel_script(
            keys=keys,
            args=[
                encode_event(requested),
                encode_event(cancelled),
                c.RETENTION_S,
                repr(time.time()),
                self.id,
            ],
        )
        result = outcome.decode() if isinstance(outcome, bytes) else str(outcome)
        if result == "missing":
            raise RunNotFound(f"no run {self.id!r}")
        if result != "finished":
            for child in self.children():
                child.cancel()
        return result

    def state(self, name: str) -> Any:
        """The latest value the run published as ``name`` (``nf.publish``); None if none."""
        raw = self._r.hget(c.run_steps(self.id), c.STATE_PREFIX + name)
        return None if raw is None else json.loads(raw)

    def _answered(self, name: str) -> bool:
        """Whether the run's log holds an answer to its input ``name``."""
        entries = self._r.xrange(c.run_log(self.id))
        events = (decode_entry(i, f) for i, f in entries)
        return any(e["type"] == ev.INPUT_RECEIVED and e.get("name") == name for e in events)

    def children(self) -> list[Run]:
        """The runs this run started (``wf.submit`` inside it), in the order it started them."""
        started = self._r.xrange(c.run_log(self.id))
        events = (decode_entry(i, f) for i, f in started)
        return [Run(self.runtime, e["child_id"]) for e in events if e["type"] == ev.CHILD_STARTED]

    def send_input(self, name: str, value: Any) -> None:
        """Answer the run's ``nf.wait_for_input(name, ...)``: validated against its schema,
        recorded once (``nf.InputRejected`` for a bad value, a second answer, or a run
        that does not wait for it), and the run goes on."""
        from .wakeups import input_outcome, resume_args

        raw = self._r.hgetall(c.run_meta(self.id))
        if not raw:
            raise RunNotFound(f"no run {self.id!r} (unknown, or expired after its retention)")
        try:
            step, answer = input_outcome(decode_meta(raw), raw, self.id, name, value)
        except InputRejected:
            if self._answered(name):
                raise InputRejected(f"run {self.id}: input {name!r} was answered already") from None
            raise
        received = ev.make(ev.INPUT_RECEIVED, name=name, value=preview(value))
        resumed = ev.make(ev.RUN_RESUMED, by="input", name=name)
        blob = codeship.pack(answer, self.runtime.secret, codeship.step_for(self.id, step))
        cluster = self.runtime.cluster
        keys, args = resume_args(self.id, step, [received, resumed], {step: blob}, cluster=cluster)
        if not int(self.runtime.resume_script(keys=keys, args=args)):
            raise InputRejected(f"run {self.id}: input {name!r} was answered already")
        if cluster:
            self._r.xadd(c.WORK_STREAM, {"run": self.id})
            self._r.zrem(c.WAKEUPS, self.id)

    def wait(self, timeout_s: float | None = None) -> str:
        """Block until the run ends (or ``timeout_s`` passes); its status.

        A connection lost on the way (a server restart, a failover) is retried for
        up to ``RECONNECT_PATIENCE_S``; then RuntimeUnavailable.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        status = self._patiently(self.status)
        if status in c.TERMINAL_STATUSES:  # one round trip for a run that has ended
            return status
        last = self._patiently(self._last_id)  # then the status again: it may end in between
        while True:
            status = self._patiently(self.status)
            if status in c.TERMINAL_STATUSES:
                return status
            remaining_ms = (
                BLOCK_MS if deadline is None else int((deadline - time.monotonic()) * 1000)
            )
            if remaining_ms <= 0:
                raise TimeoutError(f"run {self.id} still {status} after {timeout_s} s")
            last = self._patiently(self._newest_after, last, min(remaining_ms, BLOCK_MS))

    def _newest_after(self, last: str, block_ms: int) -> str:
        reply = self._r.xread({c.run_log(self.id): last}, count=READ_BATCH, block=block_ms)
        for _stream, entries in reply or []:
            last = entries[-1][0]
        return last

    def _patiently(self, call: Callable[..., T], *args: Any) -> T:
        return patiently(f"run {self.id}", call, *args)

    def result(self, timeout_s: float | None = None) -> Any:
        """The workflow's return value; RunFailed (remote traceback) or RunCancelled otherwise.

        ResultNotKept when the run succeeded but its value could not be pickled. Inside
        another run on the runtime (a parent waiting on its child) the parent waits
        without holding a worker.
        """
        if _inside_a_durable_run():
            from .._waits import gather

            return gather(self)[0]
        status = self.wait(timeout_s)
        if status == "succeeded":
            blob = self._patiently(self._r.hget, c.run_meta(self.id), "result")
            if blob is not None:
                return codeship.unpack(blob, self.runtime.secret, codeship.result_for(self.id))
        meta = self._patiently(self.meta)
        if status == "succeeded":
            problem = meta.get("result_error") or "its return value was not kept"
            raise ResultNotKept(
                f"run {self.id} ({meta.get('workflow')}) succeeded, but {problem}: "
                "return plain data from a workflow that runs on the runtime "
                "(its JSON preview is this error's .output)",
                run_id=self.id,
                output=meta.get("output"),
            )
        if status == "cancelled":
            raise RunCancelled(f"run {self.id} was cancelled")
        raise RunFailed(
            f"run {self.id} ({meta.get('workflow')}) failed: "
            f"{meta.get('error') or meta.get('reason')}",
            run_id=self.id,
            error_type=str(meta.get("error_type", "")),
            remote_traceback=str(meta.get("traceback", "")),
        )

    def events(
        self, after: str = "0", *, follow: bool = True, block_ms: int = BLOCK_MS
    ) -> Iterator[ev.Event]:
        """Every event after ``after`` in order, then live ones until the run ends.

        Following, it rides out a lost connection as ``wait`` does; a one-off read
        (``follow=False``, e.g. a view's poll, which keeps its own pace) fails at once."""
        key = c.run_log(self.id)
        ev.parse_id(after)
        last = after
        while True:
            if follow:
                reply = self._patiently(self._r.xread, {key: last}, READ_BATCH, block_ms)
            else:
                reply = self._r.xread({key: last}, count=READ_BATCH)
            entries = reply[0][1] if reply else []
            for entry_id, fields in entries:
                event = decode_entry(entry_id, fields)
                last = event["id"]
                yield event
                if event["type"] in ev.TERMINAL_EVENTS:
                    return
            if not entries and (not follow or self._patiently(self._ended_without_more, key, last)):
                return

    def _ended_without_more(self, key: str, last: str) -> bool:
        # Safety net for logs whose terminal event was trimmed or that expired.
        status = self._r.hget(c.run_meta(self.id), "status")
        if status is None:
            return True
        return status.decode() in c.TERMINAL_STATUSES and not self._r.xread({key: last}, count=1)

    def trace(self) -> Trace:
        """The run's trace from its log as it stands: spans, events, usage and timeline."""
        from .._trace import Trace

        return Trace(self.id, list(self.events(follow=False)))

    def _last_id(self) -> str:
        newest = self._r.xrevrange(c.run_log(self.id), count=1)
        return newest[0][0].decode() if newest else "0-0"


def patiently(what: str, call: Callable[..., T], *args: Any) -> T:
    """``call(*args)``, retried through a lost connection for up to RECONNECT_PATIENCE_S;
    then RuntimeUnavailable, naming ``what`` was being followed."""
    given_up_at = None
    retry = Backoff(initial_s=_RECONNECT_FIRST_S, max_s=_RECONNECT_MAX_S)
    while True:
        try:
            return call(*args)
        except (RedisConnectionError, RedisTimeoutError) as error:
            now = time.monotonic()
            given_up_at = given_up_at or now + RECONNECT_PATIENCE_S
            if now >= given_up_at:
                raise RuntimeUnavailable(
                    f"lost the runtime while following {what}: no answer for "
                    f"{RECONNECT_PATIENCE_S:g} s ({error})"
                ) from error
            delay = retry.next_delay()
            log.info("%s: connection lost (%s); retrying in %.1f s", what, error, delay)
            time.sleep(delay)


def _inside_a_durable_run() -> bool:
    from .. import _context as ctx

    frame = ctx.current()
    return frame is not None and frame.run.runtime is not None
