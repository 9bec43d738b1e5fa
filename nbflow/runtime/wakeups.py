"""Ending waits: a waiting run is queued again once what it waits for is there.

A run waiting on a timer (``nf.sleep``, an input's ``timeout_s``) or on child runs
has an entry in the wake-ups index, due when it should be looked at: sweepers take
due entries, and the worker that ends a child looks at its parent at once. Input
from a person arrives through ``send_input`` (client side). Every path ends in
RESUME, which records the wait's outcome as its step and queues the run, once:
a second wake-up of the same wait changes nothing.
"""

from __future__ import annotations

import functools
import json
import time
from typing import Any

from .. import _events as ev
from .. import constants as c
from .._waits import CHILD_POLL_MS, Answered, ChildEnded, ChildSucceeded, TimedOut, child_step
from ..errors import InputRejected
from . import codeship, scripts
from .protocol import decode_meta, encode_event

WAKE_BATCH = 100
USAGE_FIELDS = ("total_tokens", "cost_usd")


def resume_args(
    run_id: str, step: str, events: list[ev.Event], steps: dict[str, bytes], *, cluster: bool
) -> tuple[list[str], list[Any]]:
    """RESUME's keys and arguments."""
    keys = [c.run_meta(run_id), c.run_log(run_id), c.run_steps(run_id)]
    if not cluster:
        keys += [c.WORK_STREAM, c.WAKEUPS]
    pairs = [x for item in steps.items() for x in item]
    return keys, [run_id, step, len(events), *(encode_event(e) for e in events), *pairs]


class Waker:
    """A worker's side of ending waits (async)."""

    def __init__(self, redis: Any, secret: bytes, *, cluster: bool) -> None:
        self._redis = redis
        self._secret = secret
        self._cluster = cluster
        self._resume = redis.register_script(scripts.RESUME)

    async def wake_due(self) -> int:
        """Look at every waiting run whose wake-up is due; how many were queued again."""
        now_ms = int(time.time() * 1000)
        due = await self._redis.zrangebyscore(c.WAKEUPS, "-inf", now_ms, start=0, num=WAKE_BATCH)
        woken = 0
        for raw in due:
            woken += await self.wake(raw.decode())
        return woken

    async def wake(self, run_id: str) -> bool:
        """Queue ``run_id`` again if what it waits for is there; else look again later."""
        raw = await self._redis.hgetall(c.run_meta(run_id))
        meta = decode_meta(raw)
        if meta.get("status") != "waiting" or b"wait" not in raw:
            await self._redis.zrem(c.WAKEUPS, run_id)
            return False
        wait, step = json.loads(raw[b"wait"]), raw[b"wait_step"].decode()
        outcome = await self._outcome(wait, step)
        if outcome is None:  # not yet: the children still run, or the timer is not due
            later = _later(wait)
            if later is not None:
                await self._redis.zadd(c.WAKEUPS, {run_id: later})
            return False
        events, values = outcome
        steps = {key: self._pack(value, run_id, key) for key, value in values.items()}
        return await self.resume(run_id, step, events, steps)

    async def _outcome(
        self, wait: dict[str, Any], step: str
    ) -> tuple[list[ev.Event], dict[str, Any]] | None:
        """The events that end the wait, and the values its steps record; None: not yet."""
        kind, now = wait["kind"], time.time()
        if kind == "sleep" and now >= wait["until"]:
            return [ev.make(ev.RUN_RESUMED, by="timer")], {step: None}
        if kind == "input" and wait.get("until") is not None and now >= wait["until"]:
            timed_out = TimedOut(wait["name"], float(wait.get("timeout_s") or 0))
            resumed = ev.make(ev.RUN_RESUMED, by="input_timeout", name=wait["name"])
            return [resumed], {step: timed_out}
        if kind == "children":
            return await self._children(wait["runs"], step)
        return None

    async def _children(
        self, run_ids: list[str], step: str
    ) -> tuple[list[ev.Event], dict[str, Any]] | None:
        pipe = self._redis.pipeline(transaction=False)
        for run_id in run_ids:
            pipe.hgetall(c.run_meta(run_id))
        metas = await pipe.execute()
        if not all(_ended(m) for m in metas):
            return None
        events: list[ev.Event] = []
        steps: dict[str, Any] = {}
        for i, (run_id, raw) in enumerate(zip(run_ids, metas, strict=True)):
            meta = decode_meta(raw)
            steps[child_step(step, i)] = self._child_outcome(run_id, meta, raw)
            usage = {k: meta[k] for k in USAGE_FIELDS if k in meta}
            events.append(
                ev.make(ev.CHILD_ENDED, child_id=run_id, status=meta.get("status"), **usage)
            )
        events.append(ev.make(ev.RUN_RESUMED, by="children"))
        return events, steps

    def _child_outcome(
        self, run_id: str, meta: dict[str, Any], raw: dict[bytes, bytes]
    ) -> ChildSucceeded | ChildEnded:
        status = str(meta.get("status"))
        if status == "succeeded" and raw.get(b"result"):
            # The parent reads the value from the child (this process may not even be
            # able to load it): only that it succeeded is recorded here.
            return ChildSucceeded(run_id)
        return ChildEnded(
            run_id,
            str(meta.get("workflow", "")),
            "failed" if status == "succeeded" else status,  # succeeded, result not kept
            str(meta.get("error") or meta.get("result_error") or status),
            str(meta.get("error_type", "")),
            str(meta.get("traceback", "")),
        )

    async def resume(
        self, run_id: str, step: str, events: list[ev.Event], steps: dict[str, bytes]
    ) -> bool:
        keys, args = resume_args(run_id, step, events, steps, cluster=self._cluster)
        if not int(await self._resume(keys=keys, args=args)):
            return False
        if self._cluster:  # the work stream and the index are on other slots
            await self._redis.xadd(c.WORK_STREAM, {"run": run_id})
            await self._redis.zrem(c.WAKEUPS, run_id)
        return True

    def _pack(self, value: Any, run_id: str, step: str) -> bytes:
        return codeship.pack(value, self._secret, codeship.step_for(run_id, step))


def _ended(raw: dict[bytes, bytes]) -> bool:
    status = raw.get(b"status", b"").decode()
    return status in c.TERMINAL_STATUSES or not raw  # an expired child counts as ended


def _later(wait: dict[str, Any]) -> int | None:
    if wait["kind"] == "children":
        return int(time.time() * 1000) + CHILD_POLL_MS
    until = wait.get("until")
    return None if until is None else int(until * 1000)


# --- client side: input from a person --------------------------------------------
def input_outcome(
    meta: dict[str, Any], raw: dict[bytes, bytes], run_id: str, name: str, value: Any
) -> tuple[str, Answered]:
    """The wait's step and the answer to record, or InputRejected saying what is wrong."""
    status = meta.get("status")
    wait = json.loads(raw[b"wait"]) if b"wait" in raw else None
    if status != "waiting" or wait is None or wait.get("kind") != "input":
        raise InputRejected(f"run {run_id} is not waiting for input (it is {status})")
    if wait["name"] != name:
        raise InputRejected(f"run {run_id} waits for input {wait['name']!r}, not {name!r}")
    if wait.get("schema") is not None:
        validate(value, wait["schema"], name)
    return raw[b"wait_step"].decode(), Answered(value)


def validate(value: Any, schema: dict[str, Any], name: str) -> None:
    import jsonschema

    validator = _validator(json.dumps(schema, sort_keys=True))
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path)
        field = f"{name}/{where}" if where else name
        raise InputRejected(f"input {field!r}: {error.message}")


@functools.lru_cache(maxsize=256)
def _validator(text: str) -> Any:
    import jsonschema

    schema = json.loads(text)
    return jsonschema.validators.validator_for(schema)(schema)
