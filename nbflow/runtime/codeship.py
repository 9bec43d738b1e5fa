"""Signed pickles: how code and Python values travel between processes.

Unpickling runs code, so nothing is unpickled unless its HMAC-SHA256 signature,
made with the runtime's shared secret, checks out. The Python minor version is
part of the signed header: bytecode from another version is refused with a
clear reason rather than crashing a worker.

Each blob is also signed with what it is for (a ``Binding``): its role (code,
arguments, result, step, cache entry) and what it belongs to (the workflow's
name, the run, the run's step, the cache key). A signed blob copied to another
place (one run's arguments given to another run, arguments where code belongs)
is refused, as a forged one is.

Code pickled by value (a notebook's cells) keeps where it came from: its file
name and, for tracebacks in the worker, its source lines (see ``_tracebacks``).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import io
import json
import json.encoder
import linecache
import os
import pickle
import sys
import types
from collections import ChainMap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle

from .._component import Component
from .._tracebacks import label, register_source
from ..constants import ENV_SECRET
from ..errors import PayloadRejected

MAGIC = b"NBF2"
UNBOUND_MAGIC = b"NBF1"  # blobs not bound to what they are for: refused, saying why
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def load_secret(home: Path | None = None) -> bytes:
    """``NBFLOW_SECRET``, else the embedded runtime's secret file."""
    env = os.environ.get(ENV_SECRET)
    if env:
        return env.encode()
    from .embedded import secret

    return bytes(secret(home))


@dataclass(frozen=True)
class Binding:
    """What a blob is for: its ``role``, and the ``owner`` it belongs to.

    ``digest`` (code only) is checked on unpacking: the code stored under a
    digest must be the code that digest names.
    """

    role: str
    owner: str
    digest: str = ""

    def __post_init__(self) -> None:
        if "\0" in self.role or "\0" in self.owner:
            raise ValueError(f"a payload's role or owner cannot hold NUL: {self}")

    def __str__(self) -> str:
        return f"{self.role} of {self.owner!r}"


def code_for(workflow: str, digest: str = "") -> Binding:
    return Binding("code", workflow, digest)


def args_for(run_id: str) -> Binding:
    return Binding("args", run_id)


def result_for(run_id: str) -> Binding:
    return Binding("result", run_id)


def step_for(run_id: str, step: str) -> Binding:
    return Binding("step", f"{run_id}/{step}")


def cache_for(key: str) -> Binding:
    return Binding("cache", key)


def pack(obj: Any, secret: bytes, binding: Binding) -> bytes:
    payload = (
        pickle.dumps(obj, protocol=PROTOCOL) if _plain(obj) or _by_reference(obj) else _dumps(obj)
    )
    sig = _sign(secret, PYTHON, binding.role, binding.owner, payload)
    role, owner = _quote(binding.role), _quote(binding.owner)
    header = f'{{"py":"{PYTHON}","role":{role},"for":{owner},"sig":"{sig}"}}'.encode()
    return MAGIC + len(header).to_bytes(4, "big") + header + payload


def _dumps(obj: Any) -> bytes:
    buffer = io.BytesIO()
    _SourcedPickler(buffer, protocol=PROTOCOL).dump(obj)
    return buffer.getvalue()


def pickle_depth_check(obj: Any) -> None:
    """Raise RecursionError if ``obj`` is too deeply nested to pickle."""
    cloudpickle.dumps(obj, PROTOCOL)


def unpack(blob: bytes, secret: bytes, binding: Binding) -> Any:
    payload = verify(blob, secret, binding)
    return pickle.loads(payload)


PROTOCOL = 5
_quote = json.encoder.encode_basestring_ascii  # a str as a JSON string, in C
_SCALARS = frozenset({str, bytes, int, float, bool, complex, type(None)})
_CONTAINERS = frozenset({list, tuple, set, frozenset, dict})


def _plain(value: Any) -> bool:
    """Built-in scalars in built-in containers: the standard pickler writes them
    exactly as cloudpickle would, many times faster. Exact types only: a
    subclass may be defined in a notebook, which only cloudpickle can ship. A
    container met twice (shared or recursive) is left to cloudpickle too."""
    seen: set[int] = set()
    todo = [value]
    while todo:
        item = todo.pop()
        kind = type(item)
        if kind in _SCALARS:
            continue
        if kind not in _CONTAINERS or id(item) in seen:
            return False
        seen.add(id(item))
        todo.extend(item.keys() if kind is dict else item)
        if kind is dict:
            todo.extend(item.values())
    return True


def _by_reference(value: Any) -> bool:
    """A component its module defines: the standard pickler writes its name."""
    return isinstance(value, Component) and value.module_reference() is not None


# --- code that keeps its source ------------------------------------------------
MAX_SHIPPED_SOURCE_CHARS = 1_000_000
_DYNAMIC = "<dynamic-code>"  # the file name cloudpickle gives all code it pickles
_cloud_code_reduce = cloudpickle.Pickler.dispatch_table[types.CodeType]


def _reduce_code(code: types.CodeType) -> Any:
    """Pickle code with its file name and source lines; cloudpickle drops both."""
    if code.co_filename == _DYNAMIC:
        return _cloud_code_reduce(code)
    lines = _source_lines(code.co_filename)
    stripped = code.replace(co_filename=_DYNAMIC)
    return _sourced_code, (stripped, code.co_filename, label(code.co_filename), lines)


def _source_lines(filename: str) -> list[str] | None:
    # The same list for every code object of a file: the pickle holds it once.
    lines = linecache.getlines(filename)
    return lines if lines and sum(map(len, lines)) <= MAX_SHIPPED_SOURCE_CHARS else None


def _sourced_code(
    code: types.CodeType, filename: str, shown_as: str, lines: list[str] | None
) -> types.CodeType:
    """Unpickling: the code under its own file name, its source kept for tracebacks."""
    if lines is not None:
        register_source(filename, lines, shown_as if shown_as != filename else "")
    return code.replace(co_filename=filename)


class _SourcedPickler(cloudpickle.Pickler):  # type: ignore[misc]  # cloudpickle has no types
    # A pickler reads its dispatch table once, when it is made: a class attribute.
    dispatch_table = ChainMap({types.CodeType: _reduce_code}, cloudpickle.Pickler.dispatch_table)


def verify(blob: bytes, secret: bytes, binding: Binding) -> bytes:
    """The payload of a blob signed for ``binding``; PayloadRejected says why it is refused."""
    py, role, owner, sig, payload = _parts(blob)
    if not hmac.compare_digest(sig, _sign(secret, py, role, owner, payload)):
        raise PayloadRejected(
            "payload signature does not match this runtime's secret "
            "(tampered, or signed with another NBFLOW_SECRET)"
        )
    if (role, owner) != (binding.role, binding.owner):
        found = Binding(role, owner)
        raise PayloadRejected(
            f"payload is the {found}, not the {binding}: refused (copied from where it was written)"
        )
    if binding.digest and digest(blob) != binding.digest:
        raise PayloadRejected(f"code stored under {binding.digest} is not the code of that digest")
    if py != PYTHON:
        raise PayloadRejected(
            f"payload was pickled by Python {py}; this worker runs Python {PYTHON}"
        )
    return payload


def _parts(blob: bytes) -> tuple[str, str, str, str, bytes]:
    if isinstance(blob, bytes) and blob.startswith(UNBOUND_MAGIC):
        raise PayloadRejected(
            "payload was written by an earlier nbflow that did not bind payloads to their run "
            "or workflow: deploy or submit it again"
        )
    if not isinstance(blob, bytes) or not blob.startswith(MAGIC) or len(blob) < 8:
        raise PayloadRejected("payload is not a signed nbflow payload")
    size = int.from_bytes(blob[4:8], "big")
    try:
        header = json.loads(blob[8 : 8 + size])
        py, role, owner, sig = (str(header[k]) for k in ("py", "role", "for", "sig"))
    except (ValueError, KeyError, TypeError) as error:
        raise PayloadRejected("payload header is malformed") from error
    if "\0" in py + role + owner:  # never written so (see _sign)
        raise PayloadRejected("payload header is malformed")
    return py, role, owner, sig, blob[8 + size :]


def digest(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()[:32]


def _sign(secret: bytes, py: str, role: str, owner: str, payload: bytes) -> str:
    # Fields end at NUL, which none may hold (Binding refuses it, verify too): one
    # signed string reads as one set of fields only.
    mac = _keyed(secret).copy()
    mac.update(f"{py}\0{role}\0{owner}\0".encode() + payload)
    return mac.hexdigest()


@functools.lru_cache(maxsize=8)
def _keyed(secret: bytes) -> hmac.HMAC:
    """HMAC-SHA256 with ``secret`` already keyed: a copy of it signs a payload in half
    the time of hmac.digest, and stays that fast with many threads signing at once
    (hmac.digest slows down with every thread that calls it)."""
    return hmac.new(secret, digestmod=hashlib.sha256)
