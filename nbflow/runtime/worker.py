"""The worker: claims runs from the work stream and executes them.

Workers are stateless: everything about a run is in Redis. Each claim starts an
attempt whose token fences every write the attempt makes (see scripts.py); a
lease per run, renewed by a heartbeat thread that does not depend on the run's
code yielding, tells the sweepers (one in every worker) which runs lost their
worker. An attempt the server refuses stops at once: its code unwinds at the next
step, and the worker forgets the attempt (not the run, which another attempt has).

Sync runs execute on the run threads; async runs on an event loop of their own
(``runs_loop``), never on the loop that writes events: a sync step called from
async code then waits for its commit without waiting on itself, and code that
blocks its loop blocks only other async runs, which the watchdog reports.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import socket
import threading
import time
from typing import Any

from .. import _context as ctx
from .. import _events as ev
from .. import constants as c
from .._root import run_root, run_root_async
from .._workflow import Workflow
from ..errors import AttemptFenced, PayloadRejected, RunCancelled, Suspend
from . import codeship
from .attempt import Active
from .catalog import Catalog, UnknownWorkflow, load_app
from .claims import CLAIM_BLOCK_MS, Claim, Claimer
from .client import Runtime
from .connection import async_client, is_cluster, sync_client
from .execution import unloadable
from .heartbeat import Heartbeat
from .options import WorkerOptions
from .outcomes import Outcomes
from .periodic import PeriodicThread
from .runsloop import RunsLoop
from .runthreads import RunThreads
from .sweeper import Sweeper
from .wakeups import Waker
from .watchdog import INTERVAL_S as WATCHDOG_INTERVAL_S
from .watchdog import Abandoned, Watchdog
from .writer import EventWriter, RedisCache, RedisSink, StepMemo

__all__ = ["Worker", "WorkerOptions", "run_in_thread"]

log = logging.getLogger("nbflow.worker")
DRAIN_POLL_S = 0.01  # how often a draining worker looks for its last runs to end


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
        self.active: dict[str, Active] = {}  # run id -> the attempt executing it here
        self.draining = False
        self.restart_requested = False  # a stuck run: exit to be started afresh
        self.abandoned: list[Abandoned] = []  # steps of ended runs still running
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
        self.runs_loop = RunsLoop()
        self.redis = async_client(self.url, cluster=self.cluster)
        self.sync = sync_client(self.url, cluster=self.cluster)
        self.beats = sync_client(self.url, cluster=self.cluster)  # the heartbeat's own
        self.catalog = Catalog(self.registry, self.sync, self.secret)
        self.writer = EventWriter(
            self.redis, self.loop, cluster=self.cluster, on_fenced=self._fenced
        )
        self.waker = Waker(self.redis, self.secret, cluster=self.cluster)
        self.outcomes = Outcomes(
            writer=self.writer,
            waker=self.waker,
            redis=self.redis,
            secret=self.secret,
            worker_id=self.id,
            cluster=self.cluster,
            retention_s=self.options.retention_s,
        )
        # Runs submit their children through a client of the runtime's own.
        self.client = Runtime(self.url, secret=self.secret, cluster=self.cluster)
        self.cache = RedisCache(self.sync, self.secret)
        self.claimer = Claimer(
            self.redis, self.sync, worker_id=self.id, cluster=self.cluster,
            lease_ms=self.options.lease_ms, held=self.active,
        )  # fmt: skip
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
        watchers = self._watchers()
        for thread in watchers:
            thread.start()
        self.threads.start()
        loops = [self.writer.run(), self._sweeper().run()]
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
            for thread in watchers:
                thread.stop()
            self.threads.stop()
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=2.0)
            await self.writer.flush()
            await self._leave_group()
            await self.writer.close()
            await self.redis.aclose()
            self.sync.close()
            self.beats.close()
            self.client.close()
            self.runs_loop.stop()
        return c.WORKER_RESTART_EXIT if self.restart_requested else 0

    def _watchers(self) -> list[PeriodicThread]:
        """The heartbeat (its own connection) and the watchdog, each on a thread."""
        heartbeat = Heartbeat(
            self.beats,
            self.id,
            self.cluster,
            self.options.lease_ms,
            held=lambda: [a for a in list(self.active.values()) if a.holds_lease],
            cancel=self.request_cancel,
        )
        watchdog = Watchdog(
            self.active, self.abandoned, self.runs_loop, self.options, self.loop,
            stuck=self.stuck, restart=self.restart_for, warn=self.warn,
        )  # fmt: skip
        beat_s = self.options.heartbeat_ms / 1000
        return [
            PeriodicThread("nbflow-heartbeat", beat_s, heartbeat.beat, now=True),
            PeriodicThread("nbflow-watchdog", WATCHDOG_INTERVAL_S, watchdog.check),
        ]

    def _sweeper(self) -> Sweeper:
        return Sweeper(
            self.redis, self.id, self.cluster, self.options, held=self.active,
            room=lambda: 0 if self.draining else self.options.concurrency - len(self.active),
            draining=lambda: self.draining, claimer=self.claimer, start=self.start,
            wake_due=self.waker.wake_due,
        )  # fmt: skip

    def stop(self) -> None:
        """Drain from any thread (a worker that has stopped already: nothing to do)."""
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.drain)

    def drain(self) -> None:
        """Stop claiming at once; in-flight runs get ``drain_timeout_s`` to finish."""
        if not self.draining:
            log.info("worker %s draining", self.id)
        self.draining = True
        self.threads.stop_reading()
        self._slot.set()
        self._stop.set()

    async def _leave_group(self) -> None:
        # A worker that has stopped reading leaves the consumer group, so that the
        # group lists live consumers only (a message still pending under its name
        # stays for the sweepers to reclaim, and so does the consumer).
        try:
            pending = await self.redis.xpending_range(
                c.WORK_STREAM, c.WORK_GROUP, min="-", max="+", count=1, consumername=self.id
            )
            if not pending:
                await self.redis.xgroup_delconsumer(c.WORK_STREAM, c.WORK_GROUP, self.id)
        except Exception as error:
            log.info("could not leave the consumer group: %s", error)

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
            token = claim.meta.get(c.FENCE_FIELD.encode(), b"").decode()
            context = ctx.RunContext(claim.run_id, self._sink(claim, token), self.cache)
            context.redis = self.sync
            context.runtime = self.client
            context.attempt = int(token.partition("/")[0] or 0)
            earlier = self.active.get(claim.run_id)
            if earlier is not None:  # an older attempt of ours still running: it lost the run
                self._fence(earlier)
            active = Active(claim.run_id, token, context)
            active.parent_id = claim.meta.get(b"parent_id", b"").decode()
            self.active[claim.run_id] = active

    def _sink(self, claim: Claim, token: str) -> RedisSink:
        progress = claim.meta.get(b"progress")
        return RedisSink(
            self.writer,
            claim.run_id,
            token,
            self.secret,
            self.options.max_log_events,
            self.options.max_event_bytes,
            count=1,  # the claim already logged run.started
            progress=json.loads(progress) if progress else {},
            careful=int(claim.meta.get(b"restarts", b"0")) > 0,
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
            active.is_async = True
            self.runs_loop.start(self._run_async(active, wf, args, kwargs))
            return
        try:
            value = run_root(active.context, wf, tuple(args), dict(kwargs))
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
            error = unloadable(error)
        # The run records why; whoever runs this worker hears it too (a secret, an --app
        # or an installed module that differs from the clients' is its configuration to fix).
        log.warning("run %s refused (%s): %s", active.run_id, reason, error)
        self.writer.call_soon(self._end, active, None, error, reason)

    async def _run_async(self, active: Active, wf: Workflow, args: Any, kwargs: Any) -> None:
        """On the runs loop: an async run, whose outcome goes back as a sync run's does."""
        active.inner = asyncio.current_task()
        if active.context.cancelled.is_set():  # asked before its task existed
            self.writer.call_soon(self._end, active, None, RunCancelled("cancelled"))
            return
        try:
            value = await run_root_async(active.context, wf, tuple(args), dict(kwargs))
        except BaseException as error:  # its outcome, CancelledError included
            self.writer.call_soon(self._end, active, None, error)
        else:
            self.writer.call_soon(self._end, active, value, None, None, wf.redact)

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
            if active.handback:
                pass  # _drain put it back on the queue: another attempt goes on with it
            elif active.fenced or isinstance(error, AttemptFenced):
                log.warning("run %s: attempt %s lost the run; another has it", *active.names)
            elif isinstance(error, Suspend):
                await self.outcomes.suspend(active, error)
            elif error is None:
                await self.outcomes.finish(active, "succeeded", value=value, redact=redact)
            elif isinstance(error, (RunCancelled, asyncio.CancelledError)):
                await self.outcomes.finish(active, "cancelled", error=error, reason="cancelled")
            else:
                await self.outcomes.finish(active, "failed", error=error, reason=reason)
        except Exception:
            log.exception("run %s: internal error", active.run_id)
        finally:
            self._forget(active)

    def _forget(self, active: Active) -> None:
        """The attempt has ended here: its slot is free, its token need not be kept."""
        if self.active.get(active.run_id) is active:
            del self.active[active.run_id]
        self.writer.forget(active.run_id, active.token)
        self._slot.set()
        self._freed.set()
        self.watchdog_abandoned(active)

    def watchdog_abandoned(self, active: Active) -> None:
        """Steps abandoned by with_timeout that still run once their run has ended."""
        alive = [t for t in active.context.abandoned if t.is_alive()]
        if alive:
            self.abandoned.append((time.monotonic(), active.run_id, alive))

    # --- an attempt that lost its run ---------------------------------------------
    def _fenced(self, run_id: str, token: str) -> None:
        """On the loop: the server refused a write of attempt ``token``."""
        active = self.active.get(run_id)
        if active is not None and active.token == token:
            log.warning("run %s: attempt %s lost the run; stopping it", run_id, token)
            self._fence(active)

    def _fence(self, active: Active) -> None:
        """Stop an attempt that no longer holds its run: no write of it will be sent."""
        self.writer.refuse(active.run_id, active.token)
        active.context.fence()  # it stays until its code unwinds, holding no lease
        self._cancel_task(active)

    # --- signals from the heartbeat thread ----------------------------------------
    def request_cancel(self, run_id: str, *, token: str | None = None, lost: bool = False) -> None:
        active = self.active.get(run_id)
        if active is None or (token is not None and active.token != token):
            return
        if lost:
            self.loop.call_soon_threadsafe(self._fenced, run_id, active.token)
            return
        if active.cancel_asked_at is None:
            active.cancel_asked_at = time.monotonic()
        active.context.cancelled.set()
        self._cancel_task(active)

    def _cancel_task(self, active: Active) -> None:
        if active.inner is not None:
            self.runs_loop.call_soon(active.inner.cancel)

    # --- runs whose code will not stop ----------------------------------------------
    async def stuck(self, active: Active, why: str) -> None:
        """On the loop: ``active`` was cancelled but its code has not stopped (it never
        yields). Record it cancelled; a worker process then restarts itself, since only
        that ends the thread; otherwise the thread is abandoned."""
        if self.active.get(active.run_id) is not active or active.task is not None:
            return
        log.error("run %s: %s", active.run_id, why)
        active.task = asyncio.current_task()
        try:
            await self.outcomes.finish(
                active, "cancelled", error=RunCancelled(why), reason="cancelled"
            )
        finally:
            self._forget(active)
        self.restart_for(why)

    def restart_for(self, why: str) -> None:
        """Hand back every run and exit to be restarted (a worker process), or just say so."""
        if not self.options.restart_when_stuck:
            log.error("a thread of this worker cannot be stopped (%s); it is abandoned", why)
            return
        log.error("restarting this worker: %s", why)
        self.restart_requested = True
        self.options.drain_timeout_s = 0.0
        self.drain()

    def warn(self, active: Active, message: str, **fields: Any) -> None:
        """Add a warning event to a run's log (from any thread)."""
        active.context.sink.emit(ev.make(ev.WARNING, message=message, **fields))

    async def _drain(self) -> None:
        # A read in flight may still claim runs: they are served or handed back too.
        await asyncio.to_thread(self.threads.wait_read, 2 * CLAIM_BLOCK_MS / 1000)
        deadline = time.monotonic() + self.options.drain_timeout_s
        while self.active and time.monotonic() < deadline:
            await asyncio.sleep(DRAIN_POLL_S)
        for active in list(self.active.values()):
            if active.holds_lease:
                active.handback = True
                await self.outcomes.hand_back(active, "worker_draining")
            active.context.fence()  # whatever it still says is not written
            self._cancel_task(active)
            self.active.pop(active.run_id, None)
        await self.writer.flush()


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
