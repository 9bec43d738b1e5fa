"""Structured state that streams as patches: ``nf.publish(name, value)``.

A run publishes an object that changes over time (a plan, a list of steps, chat
messages); each publish appends a ``state.patch`` event holding an RFC 6902 patch
from the last published value of that name, so readers keep a live copy cheaply.
One extension: ``{"op": "append", "path": p, "value": s}`` says the string at ``p``
grew by ``s`` (a streamed text would otherwise be replaced whole at each step).
Replays publish nothing twice (publishes have positions, as emits do), and the
worker keeps the latest value of each name with the run, for the next attempt to
diff against and for ``run.state(name)`` to read at once.
"""

from __future__ import annotations

import copy
import json
import threading
from typing import Any

from . import _context as ctx
from . import _events as ev
from .constants import PUBLISH_INTERVAL_S, STATE_PREFIX
from .errors import ConfigError

APPEND = "append"


def publish(name: str, value: Any) -> None:
    """Publish ``value`` (anything JSON can hold) as the run's state ``name``; readers get
    it as patches (``run.state(name)``, ``GET /runs/{id}/state/{name}``, the views).

    A publish goes out ``PUBLISH_INTERVAL_S`` later, as one patch with every publish made
    meanwhile (a state streamed token by token costs a patch per interval, not per
    token), or sooner: before the run's next event, step, wait or end.
    """
    frame = ctx.current()
    if frame is None:
        return  # outside a run, as nf.emit
    doc = to_json(value, f"nf.publish({name!r})")
    run = frame.run
    position = run.next_position(frame)
    if position is None:  # a replay of a publish the log holds already
        return
    publisher = run.publisher
    if publisher is None:
        publisher = run.publisher = Publisher(run)
    publisher.publish(name, doc, position)


class Publisher:
    """A run's published states: the last value sent of each name, and the one waiting."""

    def __init__(self, run: ctx.RunContext) -> None:
        self._run = run
        self._lock = threading.Lock()
        self._sent: dict[str, Any] = {}
        # name -> its newest value and the positions of every publish it stands for
        self._pending: dict[str, tuple[Any, list[tuple[str, int]]]] = {}
        self._timer: threading.Timer | None = None

    def publish(self, name: str, doc: Any, position: tuple[str, int]) -> None:
        with self._lock:
            _doc, positions = self._pending.get(name, (None, []))
            self._pending[name] = (doc, [*positions, position])
            if PUBLISH_INTERVAL_S <= 0:
                self._send(name)
            elif self._timer is None:  # what comes within the interval joins this patch
                self._timer = threading.Timer(PUBLISH_INTERVAL_S, self.flush)
                self._timer.daemon = True
                self._timer.start()

    def flush(self) -> None:
        """Send every waiting value now."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            for name in list(self._pending):
                self._send(name)

    def _send(self, name: str) -> None:
        doc, positions = self._pending.pop(name)
        base = self._sent.get(name, _MISSING)
        if base is _MISSING and self._run.memo is not None:
            base = _recorded(self._run.memo, name)
        sink = self._run.sink
        *merged, last = positions
        for position, index in merged:  # said, as part of the value sent now
            sink.record(position, str(index))
        event = ev.make(ev.STATE_PATCH, name=name, patch=diff(base, doc))  # run-level: no span
        sink.emit_at(event, *last)
        sink.record(STATE_PREFIX + name, json.dumps(doc, separators=(",", ":")))
        self._sent[name] = doc


def to_json(value: Any, what: str) -> Any:
    """A JSON copy of ``value`` (a snapshot: later changes to ``value`` are not in it)."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as error:
        raise ConfigError(
            f"{what}: the value must be JSON (dicts, lists, str, numbers, bools, None): {error}"
        ) from None


def _recorded(memo: Any, name: str) -> Any:
    raw = memo.made(STATE_PREFIX + name)
    return _MISSING if raw is None else json.loads(raw)


class _Missing:
    pass


_MISSING: Any = _Missing()


def diff(old: Any, new: Any) -> list[dict[str, Any]]:
    """The patch from ``old`` to ``new`` (RFC 6902, plus string appends)."""
    import jsonpatch

    if old is _MISSING:
        return [{"op": "replace", "path": "", "value": new}]
    ops: list[dict[str, Any]] = jsonpatch.make_patch(old, new).patch
    return [_as_append(op, old) for op in ops]


def _as_append(op: dict[str, Any], old: Any) -> dict[str, Any]:
    if op["op"] != "replace" or not isinstance(op["value"], str):
        return op
    before = _resolve(old, op["path"])
    if isinstance(before, str) and op["value"].startswith(before):
        return {"op": APPEND, "path": op["path"], "value": op["value"][len(before) :]}
    return op


def apply(doc: Any, patch: list[dict[str, Any]]) -> Any:
    """``doc`` with ``patch`` applied (a new object; ``doc`` is not changed)."""
    import jsonpatch

    doc = copy.deepcopy(doc)
    for op in patch:
        if op["op"] == APPEND:
            doc = _append(doc, op["path"], op["value"])
        elif op["path"] == "" and op["op"] in ("replace", "add"):
            doc = copy.deepcopy(op["value"])
        else:
            doc = jsonpatch.apply_patch(doc, [op])
    return doc


def _append(doc: Any, path: str, text: str) -> Any:
    if path == "":
        return doc + text
    parent_path, _, last = path.rpartition("/")
    parent = _resolve(doc, parent_path)
    key: Any = int(last) if isinstance(parent, list) else _unescape(last)
    parent[key] = parent[key] + text
    return doc


def _resolve(doc: Any, path: str) -> Any:
    node = doc
    for part in path.split("/")[1:] if path else []:
        node = node[int(part)] if isinstance(node, list) else node[_unescape(part)]
    return node


def _unescape(part: str) -> str:
    return part.replace("~1", "/").replace("~0", "~")
