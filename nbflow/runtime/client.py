"""The runtime client: ship code, submit runs, list them and attach to them
(a run's own status, result and log: run.py).

Clients only write run requests and read streams; they never talk to workers.
"""

from __future__ import annotations

import functools
import getpass
import os
import pickle
import socket
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import _events as ev
from .. import constants as c
from .._local import new_run_id, set_last
from .._preview import preview
from ..errors import ArgumentsTooLarge, ConfigError, PayloadRejected, RunNotFound
from . import codeship, scripts
from .codestate import CodeState
from .connection import RawConnection, SyncRedis, is_cluster, sync_client
from .listing import RunQuery, fill_page
from .locality import ship_by_value_unless_importable
from .protocol import decode_meta, dumps, encode_event
from .run import Run

if TYPE_CHECKING:
    import pandas as pd

    from .._workflow import Workflow

Request = tuple[str, dict[str, Any], ev.Event]  # run id, metadata, run.queued
KEPT_BY_VALUE = 256  # workflows shipped by value whose last pickle a client remembers


class Runtime:
    """A connection to one runtime: a Redis URL and the secret its workers share."""

    def __init__(
        self, url: str, *, secret: bytes | None = None, cluster: bool | None = None
    ) -> None:
        self.url = url
        self.cluster = is_cluster(url) if cluster is None else cluster
        self.redis: SyncRedis = sync_client(url, cluster=self.cluster)
        self.secret = secret if secret is not None else codeship.load_secret()
        self.cancel_script = self.redis.register_script(scripts.CANCEL)
        self.resume_script = self.redis.register_script(scripts.RESUME)
        self._submitter: RawConnection | None = None  # its own connection, made on first use
        self._submitter_lock = threading.Lock()
        self._shipped: set[str] = set()
        # The embedded runtime's home: its pool may not import what this process can.
        self.pool_home: Path | None = None
        self._by_name: dict[tuple[str, str], str] = {}  # module, name -> digest
        # id of a workflow shipped by value -> it, the state its pickle was made from, digest
        self._by_value: dict[int, tuple[Workflow, CodeState, str]] = {}

    def __repr__(self) -> str:
        return f"<nbflow Runtime {self.url}>"

    def close(self) -> None:
        """Close this runtime's connections."""
        self.redis.close()
        if self._submitter is not None:
            self._submitter.close()

    def _submit_one(self, keys: list[str], args: list[Any]) -> int:
        # Submits one at a time skip the connection pool and redis-py's command
        # machinery (about half of a submit's cost in this process); a connection
        # of their own, so a blocked reader never holds them up.
        with self._submitter_lock:
            if self._submitter is None:
                self._submitter = RawConnection(self.redis)
            return int(self._submitter.script(scripts.SUBMIT, keys, args))

    # --- starting runs -------------------------------------------------------
    def submit(
        self,
        wf: Workflow,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        run_id: str | None = None,
        **origin: Any,
    ) -> Run:
        """Start a run; ``run_id`` names it (a child run's id is its parent's to choose)."""
        return self.submit_many(wf, [(args, kwargs)], run_ids=[run_id], **origin)[0]

    def submit_many(
        self,
        wf: Workflow,
        calls: list[tuple[tuple[Any, ...], dict[str, Any]]],
        *,
        run_ids: list[str | None] | None = None,
        **origin: Any,
    ) -> list[Run]:
        """Start one run per ``(args, kwargs)``: code shipped once, one round trip in all."""
        code = self.ship(wf)
        ids = run_ids or [None] * len(calls)
        requests = [
            self._request(wf.name, code, a, k, wf.redact, origin, run_id=i)
            for (a, k), i in zip(calls, ids, strict=True)
        ]
        if self._enqueue(requests):
            return self._accepted(requests)
        # The server lost the code this client had shipped: ship it again.
        self._forget_code(code)
        code = self.ship(wf)
        for _run_id, meta, _queued in requests:
            meta["code"] = code
        if not self._enqueue(requests):
            raise PayloadRejected(f"the runtime refused the code of workflow {wf.name!r}")
        return self._accepted(requests)

    def start(self, name: str, kwargs: dict[str, Any], **origin: Any) -> Run:
        """Start a workflow by name: deployed from a notebook, or served by ``--app`` workers."""
        deployed = self.redis.hget(c.DEPLOYED, name)
        code = deployed.decode() if deployed else ""
        requests = [self._request(name, code, (), kwargs, (), origin)]
        if not self._enqueue(requests):
            raise PayloadRejected(
                f"workflow {name!r} was deployed, but the runtime no longer has its code "
                "(the server was flushed or lost its data): deploy it again"
            )
        return self._accepted(requests)[0]

    def ship(self, wf: Workflow) -> str:
        """Store the workflow's code, signed and content-addressed; its digest.

        A workflow its importable module defines travels by name, and that
        payload never changes: it is made once. One defined in a notebook travels
        by value, so that the notebook's edits to the globals it uses reach the
        workers: it is pickled again whenever anything its last pickle was made
        from has changed since (see codestate), and always if that cannot be told.
        """
        if self.pool_home is not None:
            ship_by_value_unless_importable(wf.__dict__.get("__module__"), self.pool_home)
        where = wf.module_reference()
        digest = self._by_name.get(where) if where else self._unchanged_by_value(wf)
        if digest is None:
            state = None if where else CodeState.of(wf)
            blob = codeship.pack(wf, self.secret, codeship.code_for(wf.name))
            digest = codeship.digest(blob)
            if digest not in self._shipped:
                self.redis.set(c.CODE_KEY.format(digest=digest), blob, ex=c.RETENTION_S)
                self._shipped.add(digest)
            if where:
                self._by_name[where] = digest
            elif state is not None:
                self._keep_by_value(wf, state, digest)
        return digest

    def _unchanged_by_value(self, wf: Workflow) -> str | None:
        """The digest of ``wf``'s last pickle, if nothing it was made from has changed."""
        kept = self._by_value.get(id(wf))
        if kept is None or kept[0] is not wf or not kept[1].unchanged():
            return None
        return kept[2]

    def _keep_by_value(self, wf: Workflow, state: CodeState, digest: str) -> None:
        if len(self._by_value) >= KEPT_BY_VALUE and id(wf) not in self._by_value:
            del self._by_value[next(iter(self._by_value))]  # the oldest
        self._by_value[id(wf)] = (wf, state, digest)

    def _forget_code(self, digest: str) -> None:
        """The server lost this code: the next ship stores it again."""
        self._shipped.discard(digest)
        self._by_name = {k: v for k, v in self._by_name.items() if v != digest}
        self._by_value = {k: v for k, v in self._by_value.items() if v[2] != digest}

    def deploy(self, wf: Workflow) -> str:
        """Publish ``wf`` by name for the REST API and other clients; its code digest."""
        digest = self.ship(wf)
        self.redis.persist(c.CODE_KEY.format(digest=digest))
        self.redis.hset(c.DEPLOYED, wf.name, digest)
        return digest

    def _request(
        self,
        name: str,
        code: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        redact: tuple[str, ...],
        origin: dict[str, Any],
        *,
        run_id: str | None = None,
    ) -> Request:
        run_id = run_id or new_run_id()
        shown = preview({"args": list(args), "kwargs": kwargs}, redact=redact)
        meta = {
            "run_id": run_id,
            "workflow": name,
            "status": "queued",
            "created_at": repr(time.time()),
            "code": code,
            "input": dumps(shown),
            "args": self._pack_args(name, run_id, args, kwargs),
            **{k: str(v) for k, v in {**default_origin(), **origin}.items() if v is not None},
        }
        return run_id, meta, ev.make(ev.RUN_QUEUED, workflow=name, input=shown)

    def _pack_args(
        self, name: str, run_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> bytes:
        """The run's arguments, signed; refused with a clear error when they cannot go."""
        try:
            blob = codeship.pack((args, kwargs), self.secret, codeship.args_for(run_id))
        except (RecursionError, pickle.PicklingError) as error:
            if not _too_deep_error(error):
                raise
            raise ConfigError(
                f"{name}: argument {_too_deep(args, kwargs)} is nested too deeply to be sent "
                "to the runtime; flatten it, or pass a reference (a path, a key) instead"
            ) from None
        if len(blob) > c.MAX_ARGS_BYTES:
            raise ArgumentsTooLarge(
                f"{name}: the arguments are {len(blob) / 2**20:.1f} MiB pickled; the runtime "
                f"takes at most {c.MAX_ARGS_BYTES / 2**20:g} MiB "
                "(nbflow.constants.MAX_ARGS_BYTES): pass a path or a key to the data instead"
            )
        return blob

    def _enqueue(self, requests: list[Request]) -> bool:
        """Write the runs; False if the server refused them for want of their code
        (then it wrote nothing: all of them share that code)."""
        if self.cluster:
            if not self._code_kept(requests[0][1]["code"]):
                return False
            self._enqueue_in_order(requests)
            return True
        # 2: a run with that id exists already (a child run submitted again by a replay)
        if len(requests) == 1:
            return self._submit_one(*_submit_args(*requests[0])) in (1, 2)
        pipe = self.redis.pipeline(transaction=False)
        for request in requests:
            keys, args = _submit_args(*request)
            pipe.eval(scripts.SUBMIT, len(keys), *keys, *args)
        return all(int(reply) in (1, 2) for reply in pipe.execute())

    def _accepted(self, requests: list[Request]) -> list[Run]:
        runs = [Run(self, run_id) for run_id, _meta, _queued in requests]
        if runs:
            set_last(runs[-1])
        return runs

    def _code_kept(self, digest: str) -> bool:
        """Cluster: whether the server still has this code (none needed: True), its
        expiry pushed back; on a standalone server SUBMIT does both atomically."""
        if not digest:
            return True
        key = c.CODE_KEY.format(digest=digest)
        pipe = self.redis.pipeline(transaction=False)
        pipe.exists(key)
        pipe.expire(key, c.RETENTION_S, gt=True)
        exists, _pushed = pipe.execute()
        return bool(exists)

    def _enqueue_in_order(self, requests: list[Request]) -> None:
        # On Cluster: metadata and the first event go before the work message, so a
        # worker never sees a run it cannot read; a client that dies half-way leaves
        # at worst a queued run with no work message, which it never reported accepted.
        pipe = self.redis.pipeline(transaction=False)
        for run_id, meta, queued in requests:
            pipe.hset(c.run_meta(run_id), mapping=meta)
            pipe.xadd(c.run_log(run_id), {"e": encode_event(queued)})
            pipe.zadd(c.RUNS_INDEX, {run_id: float(meta["created_at"])})
        for run_id, _meta, _queued in requests:
            pipe.xadd(c.WORK_STREAM, {"run": run_id})
        pipe.execute()

    # --- reading -----------------------------------------------------------
    def result_of(self, run_id: str) -> Any:
        """The recorded return value of a run that succeeded (a child, read by its parent)."""
        blob = self.redis.hget(c.run_meta(run_id), "result")
        if blob is None:
            raise RunNotFound(f"run {run_id} kept no result (expired, or never had one)")
        return codeship.unpack(blob, self.secret, codeship.result_for(run_id))

    def attach(self, run_id: str) -> Run:
        """A handle on run ``run_id``; RunNotFound if this runtime has no such run."""
        if not self.redis.exists(c.run_meta(run_id)):
            raise RunNotFound(f"no run {run_id!r} on {self.url}")
        return Run(self, run_id)

    def handle(self, run_id: str) -> Run:
        """A handle on run ``run_id``, unchecked (``attach`` checks that it exists)."""
        return Run(self, run_id)

    def run_ids(self, *, limit: int = 100) -> list[str]:
        """The ids of the newest ``limit`` runs, newest first."""
        return [r.decode() for r in self.redis.zrevrange(c.RUNS_INDEX, 0, limit - 1)]

    def metas(self, run_ids: list[str]) -> list[dict[str, Any]]:
        """The metadata of these runs, skipping those that are gone."""
        pipe = self.redis.pipeline(transaction=False)
        for run_id in run_ids:
            pipe.hgetall(c.run_meta(run_id))
        return [decode_meta(raw) for raw in pipe.execute() if raw]

    def runs(
        self,
        *,
        limit: int = 100,
        cursor: str | None = None,
        status: str | tuple[str, ...] | None = None,
        workflow: str | None = None,
        since: float | datetime | None = None,
        parent: str | None = None,
        notebook: str | None = None,
    ) -> pd.DataFrame:
        """The newest ``limit`` runs that match the filters (older than ``cursor``), as a
        DataFrame; its ``attrs["next_cursor"]`` goes on from there (None: no more)."""
        from .views import runs_frame

        query = RunQuery(status, workflow, since, parent, notebook)
        page = fill_page(self.redis, query, limit=limit, cursor=cursor)
        frame = runs_frame(page.runs)
        frame.attrs["next_cursor"] = page.next_cursor
        return frame

    def queue_depth(self) -> int:
        """Run requests waiting for a worker or claimed but not yet acknowledged."""
        try:
            groups = self.redis.xinfo_groups(c.WORK_STREAM)
        except Exception:
            return 0
        return sum(int(g.get("lag") or 0) + int(g.get("pending") or 0) for g in groups)

    def workers(self) -> list[dict[str, Any]]:
        """The workers seen in the last three lease periods, with when each was last seen."""
        cutoff_ms = (time.time() * 1000) - 3 * c.LEASE_MS
        live = self.redis.zrangebyscore(c.WORKERS, cutoff_ms, "+inf", withscores=True)
        return [{"worker": w.decode(), "last_seen_ms": s} for w, s in live]


def _too_deep(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """The name of the first argument that cannot be pickled for its depth."""
    named = [(f"#{i}", v) for i, v in enumerate(args)] + [(repr(k), v) for k, v in kwargs.items()]
    for label, value in named:
        try:
            codeship.pickle_depth_check(value)
        except (RecursionError, pickle.PicklingError) as error:
            if _too_deep_error(error):
                return label
    return "(one of them)"


def _too_deep_error(error: BaseException) -> bool:
    # cloudpickle reports a RecursionError as a PicklingError caused by it
    return isinstance(error, RecursionError) or isinstance(error.__cause__, RecursionError)


def _submit_args(
    run_id: str, meta: dict[str, Any], queued: ev.Event
) -> tuple[list[str], list[Any]]:
    """SUBMIT's keys and arguments for one run."""
    keys = [c.run_meta(run_id), c.run_log(run_id), c.RUNS_INDEX, c.WORK_STREAM]
    if meta["code"]:
        keys.append(c.CODE_KEY.format(digest=meta["code"]))
    fields = [item for pair in meta.items() for item in pair]
    return keys, [run_id, meta["created_at"], encode_event(queued), c.RETENTION_S, *fields]


@functools.cache
def _process_origin(pid: int) -> tuple[tuple[str, Any], ...]:
    from ..jupyter.origin import kernel_origin

    origin = {"user": getpass.getuser(), "host": socket.gethostname(), "pid": pid}
    return tuple({**origin, **kernel_origin()}.items())


def default_origin() -> dict[str, Any]:
    """Who started a run, and from which notebook and kernel, for listings and re-attach."""
    return dict(_process_origin(os.getpid()))


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def connect(
    url: str | None = None,
    *,
    workers: int | None = None,
    start_workers: bool = True,
    secret: bytes | None = None,
) -> Runtime:
    """Connect this process to a runtime, starting the embedded default when no URL is given."""
    global _runtime
    url = url or os.environ.get(c.ENV_REDIS_URL)
    with _runtime_lock:
        if _runtime is not None:
            _runtime.close()
        if url:
            _runtime = Runtime(url, secret=secret)
        else:
            _runtime = _embedded_runtime(workers, start_workers, secret)
        return _runtime


def _embedded_runtime(workers: int | None, start_workers: bool, secret: bytes | None) -> Runtime:
    from . import embedded, pool

    home = embedded.home()
    url = embedded.ensure_server(home)
    if start_workers:
        pool.ensure_pool(url, home, workers=workers or c.EMBEDDED_WORKERS)
    # NBFLOW_SECRET wins over the home's secret file, as it does for the pool's workers.
    runtime = Runtime(url, secret=secret or codeship.load_secret(home), cluster=False)
    runtime.pool_home = Path(home)
    return runtime


def connected_runtime() -> Runtime | None:
    """The runtime this process connected to, if any (connecting none)."""
    return _runtime


def get_runtime() -> Runtime:
    """The connected runtime, connecting to the default (env or embedded) on first use."""
    if _runtime is None:
        return connect()
    return _runtime


def set_runtime(runtime: Runtime | None) -> None:
    global _runtime
    with _runtime_lock:
        _runtime = runtime
