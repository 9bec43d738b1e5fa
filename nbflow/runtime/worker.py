"""The worker: claims runs from the work stream and executes them.

Workers are stateless: everything about a run is in Redis. A lease per run,
renewed by a heartbeat thread that does not depend on the run's code yielding,
tells the sweepers (one in every worker) which runs lost their worker.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .. import _context as ctx
from .. import _events as ev
from .. import constants as c
from .._preview import preview
from .._step import _describe, _format_traceback
from .._workflow import Workflow
from ..errors import NbflowError, PayloadRejected, RunCancelled
from . import codeship
from .claims import Claim, Claimer
from .connection import async_client, is_cluster, sync_client
from .heartbeat import Heartbeat
from .protocol import dumps, encode_event
from .sweeper import Sweeper
from .writer import EventWriter, RedisCache, RedisSink, StepMemo

log = logging.getLogger("nbflow.worker")


class UnknownWorkflow(NbflowError):
    pass


@dataclass
class Active:
    run_id: str
    context: ctx.RunContext
    task: asyncio.Task[Any] | None = None  # the whole execution
    inner: asyncio.Task[Any] | None = None  # an async workflow's own task, cancelled at once
    handback: bool = False
    lost: bool = False
    started: float = field(default_factory=time.monotonic)


@dataclass
class WorkerOptions:
    concurrency: int = c.WORKER_CONCURRENCY
    lease_ms: int = c.LEASE_MS
    heartbeat_ms: int = c.HEARTBEAT_MS
    sweep_interval_ms: int = c.SWEEP_INTERVAL_MS
    drain_timeout_s: float = c.DRAIN_TIMEOUT_S
    max_restarts: int = c.MAX_RESTARTS
    retention_s: int = c.RETENTION_S
    max_log_events: int = c.MAX_LOG_EVENTS


class Worker:
    def __init__(
        self,
        url: str,
        *,
        app: str | None = None,
        secret: bytes | None = None,
        options: WorkerOptions | None = None,
    ) -> None:
        self.url = url
        self.options = options or WorkerOptions()
        self.id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.secret = secret if secret is not None else codeship.load_secret()
        self.registry = load_app(app) if app else {}
        self.cluster = is_cluster(url)
        self.active: dict[str, Active] = {}
        self.draining = False
        self._code_cache: dict[str, Workflow] = {}
        self._stop = asyncio.Event()

    # --- lifecycle -----------------------------------------------------------
    def run(self) -> int:
        """Serve until SIGTERM/SIGINT, drain, and return the exit status.

        Sync steps of handed-back runs may still be running on threads; nothing
        can stop them, so the loop is closed without waiting for them (the
        caller exits the process).
        """
        loop = asyncio.new_event_loop()
        try:
            return loop.run_until_complete(self.main())
        finally:
            loop.close()

    async def main(self, *, install_signals: bool = True) -> int:
        ctx.install_thread_propagation()
        self.loop = asyncio.get_running_loop()
        self.redis = async_client(self.url, cluster=self.cluster)
        self.sync = sync_client(self.url, cluster=self.cluster)
        self.writer = EventWriter(self.redis, self.loop, cluster=self.cluster)
        self.cache = RedisCache(self.sync, self.secret)
        self.claimer = Claimer(self)
        self._slot = asyncio.Event()
        # One thread per run slot, so sync workflows never queue behind each other.
        self.threads = ThreadPoolExecutor(self.options.concurrency, thread_name_prefix="nbflow-run")
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.loop.add_signal_handler(sig, self.drain)
        await self._ensure_group()
        heartbeat = Heartbeat(self)
        sweeper = Sweeper(self)
        heartbeat.start()
        tasks = [
            asyncio.create_task(t) for t in (self.writer.run(), sweeper.run(), self._claim_loop())
        ]
        log.info(
            "worker %s serving %s (concurrency %d)", self.id, self.url, self.options.concurrency
        )
        try:
            await self._stop.wait()
            await self._drain()
        finally:
            heartbeat.stop()
            self.threads.shutdown(wait=False, cancel_futures=True)
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=2.0)
            await self.writer.flush()
            await self.redis.aclose()
            self.sync.close()
        return 0

    def stop(self) -> None:
        """Drain from any thread."""
        self.loop.call_soon_threadsafe(self.drain)

    def drain(self) -> None:
        """Stop claiming at once; in-flight runs get ``drain_timeout_s`` to finish."""
        if not self.draining:
            log.info("worker %s draining", self.id)
        self.draining = True
        self._slot.set()
        self._stop.set()

    async def _ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(c.WORK_STREAM, c.WORK_GROUP, id="0", mkstream=True)
        except Exception as error:
            if "BUSYGROUP" not in str(error):
                raise

    # --- claiming ---------------------------------------------------------------
    async def _claim_loop(self) -> None:
        while not self.draining:
            free = self.options.concurrency - len(self.active)
            if free <= 0:
                self._slot.clear()
                await self._slot.wait()
                continue
            try:
                claims = await self.claimer.read(free)
            except Exception as error:
                await self._after_redis_error(error)
                continue
            self.start(claims)
            # Let the claimed runs start before the next read goes out.
            await asyncio.sleep(0)

    async def _after_redis_error(self, error: Exception) -> None:
        if "NOGROUP" in str(error):
            await self._ensure_group()  # the server lost the group (restart without persistence)
            return
        log.warning("claim failed: %s", error)
        await asyncio.sleep(0.2)

    def start(self, claims: list[Claim]) -> None:
        """Execute runs this worker has just claimed."""
        for claim in claims:
            context = ctx.RunContext(
                claim.run_id, self._sink(claim.run_id), self.cache, redis=self.sync
            )
            active = Active(claim.run_id, context)
            self.active[claim.run_id] = active
            active.task = asyncio.create_task(self._execute(active, claim.meta, claim.steps))

    def _sink(self, run_id: str) -> RedisSink:
        # count=1: the claim already logged run.started
        return RedisSink(
            self.writer, run_id, self.id, self.secret, self.options.max_log_events, count=1
        )

    # --- executing ----------------------------------------------------------------
    async def _execute(
        self, active: Active, raw: dict[bytes, bytes], steps: dict[bytes, bytes]
    ) -> None:
        run_id = active.run_id
        try:
            await self._execute_inner(active, raw, steps)
        except Exception:
            log.exception("run %s: internal error", run_id)
        finally:
            self.active.pop(run_id, None)
            self._slot.set()

    async def _execute_inner(
        self, active: Active, raw: dict[bytes, bytes], steps: dict[bytes, bytes]
    ) -> None:
        try:
            wf = await self._load_workflow(raw)
            args, kwargs = codeship.unpack(raw.get(b"args", b""), self.secret)
        except (PayloadRejected, UnknownWorkflow) as error:
            reason = (
                "unknown_workflow" if isinstance(error, UnknownWorkflow) else "payload_rejected"
            )
            await self._finish(active, "failed", error=error, reason=reason)
            return
        active.context.memo = StepMemo(steps, self.secret) if steps else None
        await self._run_workflow(active, wf, args, kwargs)

    async def _run_workflow(self, active: Active, wf: Workflow, args: Any, kwargs: Any) -> None:
        try:
            if wf.is_async:
                active.inner = asyncio.create_task(_call_async(active.context, wf, args, kwargs))
                value = await active.inner
            else:
                value = await self._in_thread(_call_sync, active.context, wf, args, kwargs)
        except (RunCancelled, asyncio.CancelledError) as error:
            await self._stopped(active, error)
        except Exception as error:
            await self._finish(active, "failed", error=error)
        else:
            await self._finish(active, "succeeded", value=value, redact=wf.redact)

    def _in_thread(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """``fn(*args)`` on a run thread; its outcome comes back through the writer's
        wake-ups, so a busy worker pays no extra wake-up per run."""
        outcome: asyncio.Future[Any] = self.loop.create_future()
        running = self.threads.submit(fn, *args)
        running.add_done_callback(lambda done: self.writer.call_soon(_settle, done, outcome))
        return outcome

    async def _stopped(self, active: Active, error: BaseException) -> None:
        if active.handback:
            return  # _drain already put it back on the queue
        if active.lost or active.run_id in self.writer.lost:
            log.warning("run %s: lease lost; another worker has it", active.run_id)
        elif active.handback:
            await self.hand_back(active.run_id, "worker_draining")
        else:
            await self._finish(active, "cancelled", error=error, reason="cancelled")

    async def _load_workflow(self, raw: dict[bytes, bytes]) -> Workflow:
        name = raw.get(b"workflow", b"").decode()
        digest = raw.get(b"code", b"").decode()
        if not digest:
            if name in self.registry:
                return self.registry[name]
            raise UnknownWorkflow(
                f"workflow {name!r} is not registered on worker {self.id} "
                "(start the worker with --app, or deploy the workflow)"
            )
        if digest not in self._code_cache:
            blob = await self.redis.get(c.CODE_KEY.format(digest=digest))
            if blob is None:
                raise PayloadRejected(
                    f"code {digest} for workflow {name!r} is missing from the runtime"
                )
            wf = codeship.unpack(blob, self.secret)
            if not isinstance(wf, Workflow):
                raise PayloadRejected(f"code {digest} is not a workflow")
            self._code_cache[digest] = wf
        return self._code_cache[digest]

    async def _finish(
        self,
        active: Active,
        status: str,
        *,
        value: Any = None,
        error: BaseException | None = None,
        reason: str | None = None,
        redact: tuple[str, ...] = (),
    ) -> None:
        if active.run_id in self.writer.lost:
            return
        fields: dict[str, Any] = {"ended_at": repr(time.time())}
        sink = active.context.sink
        if isinstance(sink, RedisSink) and sink.progress:
            final = "done" if status == "succeeded" else "failed"
            steps = {
                k: final if v in ("running", "retrying") else v for k, v in sink.progress.items()
            }
            fields["progress"] = dumps(steps)
        if status == "succeeded":
            shown = preview(value, redact=redact)
            fields["output"] = dumps(shown)
            try:
                fields["result"] = codeship.pack(value, self.secret)
            except Exception as pickling:
                log.warning(
                    "run %s: result cannot be pickled (%s); only its preview is kept",
                    active.run_id,
                    pickling,
                )
            event = ev.make(ev.RUN_SUCCEEDED, output=shown)
        else:
            event = _error_event(status, error, reason)
            fields.update(
                {
                    k: str(event[k])
                    for k in ("error", "error_type", "traceback", "reason")
                    if event.get(k)
                }
            )
        args: list[Any] = [
            self.id,
            status,
            encode_event(event),
            self.options.retention_s,
            active.run_id,
        ]
        for key, val in fields.items():
            args.extend((key, val))
        await self.writer.call(active.run_id, "finish", args)

    async def hand_back(self, run_id: str, reason: str) -> bool:
        """Put a run this worker holds back on the queue, for another worker to resume."""
        event = ev.make(ev.RUN_RESTARTED, reason=reason, worker=self.id)
        done = await self.writer.call(run_id, "requeue", [self.id, encode_event(event)])
        if int(done) == 1:
            await self.redis.xadd(c.WORK_STREAM, {"run": run_id})
            await self.redis.zrem(c.LEASES, run_id)
            return True
        return False

    # --- signals from the heartbeat thread ----------------------------------------
    def request_cancel(self, run_id: str, *, lost: bool = False) -> None:
        active = self.active.get(run_id)
        if active is None:
            return
        active.lost = active.lost or lost
        active.context.cancelled.set()
        if active.inner is not None:
            self.loop.call_soon_threadsafe(active.inner.cancel)

    async def _drain(self) -> None:
        pending = [a.task for a in self.active.values() if a.task is not None]
        if pending:
            await asyncio.wait(pending, timeout=self.options.drain_timeout_s)
        for active in list(self.active.values()):
            active.handback = True
            active.context.cancelled.set()
            await self.hand_back(active.run_id, "worker_draining")
            self.active.pop(active.run_id, None)
        await self.writer.flush()


def _error_event(status: str, error: BaseException | None, reason: str | None) -> ev.Event:
    if status == "cancelled":
        return ev.make(ev.RUN_CANCELLED, reason=reason or "cancelled")
    assert error is not None
    return ev.make(
        ev.RUN_FAILED,
        error=_describe(error),
        error_type=type(error).__name__,
        traceback=_format_traceback(error),
        reason=reason or "error",
    )


def _settle(done: Future[Any], outcome: asyncio.Future[Any]) -> None:
    if outcome.cancelled():
        return
    if done.cancelled():  # the pool shut down before the run got a thread
        outcome.cancel()
        return
    error = done.exception()
    if error is not None:
        outcome.set_exception(error)
    else:
        outcome.set_result(done.result())


def _call_sync(context: ctx.RunContext, wf: Workflow, args: Any, kwargs: Any) -> Any:
    token = ctx.enter(ctx.Frame(context, None, ""))
    try:
        return wf._call_sync(tuple(args), dict(kwargs))
    finally:
        ctx.leave(token)


async def _call_async(context: ctx.RunContext, wf: Workflow, args: Any, kwargs: Any) -> Any:
    token = ctx.enter(ctx.Frame(context, None, ""))
    try:
        return await wf._call_async(tuple(args), dict(kwargs))
    finally:
        ctx.leave(token)


def load_app(module_name: str) -> dict[str, Workflow]:
    """The workflows an importable module defines, by name: served with no pickling."""
    module = importlib.import_module(module_name)
    found = {obj.name: obj for obj in vars(module).values() if isinstance(obj, Workflow)}
    if not found:
        raise NbflowError(f"module {module_name!r} defines no nbflow workflows")
    return found


def run_in_thread(worker: Worker) -> threading.Thread:
    """Serve ``worker`` on a background thread (tests, notebooks); stop with ``worker.drain()``."""
    started = threading.Event()

    def target() -> None:
        async def main() -> None:
            worker_task = asyncio.create_task(worker.main(install_signals=False))
            started.set()
            await worker_task

        asyncio.run(main())

    thread = threading.Thread(target=target, name=f"nbflow-worker-{worker.id}", daemon=True)
    thread.start()
    started.wait(10)
    return thread
