"""The worker: claims runs from the work stream and executes them.

Workers are stateless: everything about a run is in Redis. A lease per run,
renewed by a heartbeat thread that does not depend on the run's code yielding,
tells the sweepers (one in every worker) which runs lost their worker.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .. import _context as ctx
from .. import _events as ev
from .. import constants as c
from .._workflow import Workflow
from ..errors import PayloadRejected, RunCancelled
from . import codeship
from .catalog import Catalog, UnknownWorkflow, load_app
from .claims import CLAIM_BLOCK_MS, Claim, Claimer
from .connection import async_client, is_cluster, sync_client
from .ending import ending
from .heartbeat import Heartbeat
from .protocol import encode_event
from .runthreads import RunThreads
from .sweeper import Sweeper
from .writer import EventWriter, RedisCache, RedisSink, StepMemo

log = logging.getLogger("nbflow.worker")
DRAIN_POLL_S = 0.01  # how often a draining worker looks for its last runs to end


@dataclass
class Active:
    run_id: str
    context: ctx.RunContext
    task: asyncio.Task[Any] | None = None  # an async run's execution, or a run's ending
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
        self.catalog = Catalog(self.registry, self.sync, self.secret)
        self.writer = EventWriter(self.redis, self.loop, cluster=self.cluster)
        self.cache = RedisCache(self.sync, self.secret)
        self.claimer = Claimer(self)
        self._slot = asyncio.Event()  # a run ended (the cluster claim loop waits for it)
        self._freed = threading.Event()  # the same, for the reading thread
        # One thread per run slot, so sync workflows never queue behind each other;
        # on a standalone server they read the work stream too (see runthreads).
        reader = None if self.cluster else self._read_work
        self.threads = RunThreads(
            self.options.concurrency, self._serve, reader, self.writer.call_soon
        )
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.loop.add_signal_handler(sig, self.drain)
        self._ensure_group()
        heartbeat = Heartbeat(self)
        sweeper = Sweeper(self)
        heartbeat.start()
        self.threads.start()
        loops = [self.writer.run(), sweeper.run()]
        if self.cluster:
            loops.append(self._claim_loop())
        tasks = [asyncio.create_task(t) for t in loops]
        log.info(
            "worker %s serving %s (concurrency %d)", self.id, self.url, self.options.concurrency
        )
        try:
            await self._stop.wait()
            await self._drain()
        finally:
            heartbeat.stop()
            self.threads.stop()
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=2.0)
            await self.writer.flush()
            await self.writer.close()
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
        self.threads.stop_reading()
        self._slot.set()
        self._stop.set()

    def _ensure_group(self) -> None:
        try:
            self.sync.xgroup_create(c.WORK_STREAM, c.WORK_GROUP, id="0", mkstream=True)
        except Exception as error:
            if "BUSYGROUP" not in str(error):
                raise

    # --- claiming ---------------------------------------------------------------
    def _read_work(self) -> list[Claim]:
        """On a run thread (standalone): wait for work and claim it, bounded in time."""
        if self.draining:
            return []
        self._freed.clear()
        free = self.options.concurrency - len(self.active)
        if free <= 0:
            self._freed.wait(CLAIM_BLOCK_MS / 1000)
            return []
        try:
            claims = self.claimer.take(free)
        except Exception as error:
            if not self.draining:  # (a stopped worker must not recreate the group)
                time.sleep(self._claim_failed(error))
            return []
        finally:
            if self.draining:
                self.claimer.close()  # the last read: its connection goes with it
        self._register(claims)
        return claims

    async def _claim_loop(self) -> None:
        """Redis Cluster: claims are read on the loop and handed to the run threads."""
        while not self.draining:
            free = self.options.concurrency - len(self.active)
            if free <= 0:
                self._slot.clear()
                await self._slot.wait()
                continue
            try:
                claims = await self.claimer.read(free)
            except Exception as error:
                await asyncio.sleep(self._claim_failed(error))
                continue
            self.start(claims)

    def _claim_failed(self, error: Exception) -> float:
        """Recover from a failed read of the work stream; seconds to wait before the next."""
        if "NOGROUP" in str(error):
            self._ensure_group()  # the server lost the group (restart without persistence)
            return 0.0
        log.warning("claim failed: %s", error)
        return 0.2

    def start(self, claims: list[Claim]) -> None:
        """Execute runs this worker has just claimed (from any thread)."""
        self._register(claims)
        self.threads.put(claims)

    def _register(self, claims: list[Claim]) -> None:
        for claim in claims:
            context = ctx.RunContext(
                claim.run_id, self._sink(claim.run_id), self.cache, redis=self.sync
            )
            self.active[claim.run_id] = Active(claim.run_id, context)

    def _sink(self, run_id: str) -> RedisSink:
        # count=1: the claim already logged run.started
        return RedisSink(
            self.writer, run_id, self.id, self.secret, self.options.max_log_events, count=1
        )

    # --- executing ----------------------------------------------------------------
    def _serve(self, claim: Claim) -> None:
        """On a run thread: a sync run executes right here; an async one moves to the loop."""
        active = self.active.get(claim.run_id)
        if active is None:
            return
        if active.context.cancelled.is_set():  # cancelled or handed back before it started
            self.writer.call_soon(self._end, active, None, RunCancelled("cancelled"))
            return
        try:
            wf = self.catalog.workflow(claim.meta, self.id)
            args, kwargs = codeship.unpack(
                claim.meta.get(b"args", b""), self.secret, codeship.args_for(claim.run_id)
            )
        except Exception as error:  # the run cannot start here: it fails, saying why
            self._refuse(active, error)
            return
        active.context.memo = (
            StepMemo(claim.steps, self.secret, claim.run_id) if claim.steps else None
        )
        if wf.is_async:
            self.loop.call_soon_threadsafe(self._start_async, active, wf, args, kwargs)
            return
        try:
            value = _call_sync(active.context, wf, args, kwargs)
        except BaseException as error:
            self.writer.call_soon(self._end, active, None, error)
        else:
            # Back on the loop through the writer's wake-ups: a busy worker pays
            # no extra wake-up per run.
            self.writer.call_soon(self._end, active, value, None, None, wf.redact)

    def _refuse(self, active: Active, error: Exception) -> None:
        if isinstance(error, UnknownWorkflow):
            reason = "unknown_workflow"
        elif isinstance(error, PayloadRejected):
            reason = "payload_rejected"
        else:  # unpickling it raised: most often, code from a module this worker cannot import
            reason = "payload_unloadable"
            error = _unloadable(error)
        # The run records why; whoever runs this worker hears it too (a secret, an --app
        # or an installed module that differs from the clients' is its configuration to fix).
        log.warning("run %s refused (%s): %s", active.run_id, reason, error)
        self.writer.call_soon(self._end, active, None, error, reason)

    def _start_async(self, active: Active, wf: Workflow, args: Any, kwargs: Any) -> None:
        active.inner = asyncio.create_task(_call_async(active.context, wf, args, kwargs))
        active.task = asyncio.create_task(self._await_async(active, active.inner, wf.redact))

    async def _await_async(
        self, active: Active, inner: asyncio.Task[Any], redact: tuple[str, ...]
    ) -> None:
        try:
            value = await inner
        except BaseException as error:
            await self._conclude(active, None, error)
        else:
            await self._conclude(active, value, None, redact=redact)

    def _end(self, active: Active, *outcome: Any) -> None:
        """On the loop: ``_conclude(active, *outcome)`` (a run thread's run ended)."""
        active.task = asyncio.create_task(self._conclude(active, *outcome))

    async def _conclude(
        self,
        active: Active,
        value: Any,
        error: BaseException | None,
        reason: str | None = None,
        redact: tuple[str, ...] = (),
    ) -> None:
        """Record how a run ended, and free its slot."""
        try:
            if error is None:
                await self._finish(active, "succeeded", value=value, redact=redact)
            elif isinstance(error, (RunCancelled, asyncio.CancelledError)):
                await self._stopped(active, error)
            else:
                await self._finish(active, "failed", error=error, reason=reason)
        except Exception:
            log.exception("run %s: internal error", active.run_id)
        finally:
            if self.active.get(active.run_id) is active:
                del self.active[active.run_id]
            self._slot.set()
            self._freed.set()

    async def _stopped(self, active: Active, error: BaseException) -> None:
        if active.handback:
            return  # _drain already put it back on the queue
        if active.lost or active.run_id in self.writer.lost:
            log.warning("run %s: lease lost; another worker has it", active.run_id)
        else:
            await self._finish(active, "cancelled", error=error, reason="cancelled")

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
        sink = active.context.sink
        event, fields = ending(
            active.run_id,
            status,
            value=value,
            error=error,
            reason=reason,
            redact=redact,
            progress=sink.progress if isinstance(sink, RedisSink) else {},
            secret=self.secret,
        )
        args = [self.id, status, encode_event(event), self.options.retention_s, active.run_id]
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
        # A read in flight may still claim runs: they are served or handed back too.
        await asyncio.to_thread(self.threads.wait_read, 2 * CLAIM_BLOCK_MS / 1000)
        deadline = time.monotonic() + self.options.drain_timeout_s
        while self.active and time.monotonic() < deadline:
            await asyncio.sleep(DRAIN_POLL_S)
        for active in list(self.active.values()):
            active.handback = True
            active.context.cancelled.set()
            await self.hand_back(active.run_id, "worker_draining")
            self.active.pop(active.run_id, None)
        await self.writer.flush()


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


def _unloadable(error: Exception) -> PayloadRejected:
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
