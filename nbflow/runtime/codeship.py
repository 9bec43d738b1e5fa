"""Signed pickles: how code and Python values travel between processes.

Unpickling runs code, so nothing is unpickled unless its HMAC-SHA256 signature,
made with the runtime's shared secret, checks out. The Python minor version is
part of the signed header: bytecode from another version is refused with a
clear reason rather than crashing a worker.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import os
import pickle
import sys
from pathlib import Path
from typing import Any

import cloudpickle

from .._component import Component
from ..constants import ENV_SECRET
from ..errors import PayloadRejected

MAGIC = b"NBF1"
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def load_secret(home: Path | None = None) -> bytes:
    """``NBFLOW_SECRET``, else the embedded runtime's secret file."""
    env = os.environ.get(ENV_SECRET)
    if env:
        return env.encode()
    from .embedded import secret

    return bytes(secret(home))


def pack(obj: Any, secret: bytes) -> bytes:
    payload = (
        pickle.dumps(obj, protocol=PROTOCOL)
        if _plain(obj) or _by_reference(obj)
        else cloudpickle.dumps(obj, PROTOCOL)
    )
    header = f'{{"py":"{PYTHON}","sig":"{_sign(secret, PYTHON, payload)}"}}'.encode()
    return MAGIC + len(header).to_bytes(4, "big") + header + payload


def pickle_depth_check(obj: Any) -> None:
    """Raise RecursionError if ``obj`` is too deeply nested to pickle."""
    cloudpickle.dumps(obj, PROTOCOL)


def unpack(blob: bytes, secret: bytes) -> Any:
    payload = verify(blob, secret)
    return pickle.loads(payload)


PROTOCOL = 5
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


def verify(blob: bytes, secret: bytes) -> bytes:
    """The payload of a signed blob; PayloadRejected says why it is refused."""
    if not isinstance(blob, bytes) or not blob.startswith(MAGIC) or len(blob) < 8:
        raise PayloadRejected("payload is not a signed nbflow payload")
    size = int.from_bytes(blob[4:8], "big")
    try:
        header = json.loads(blob[8 : 8 + size])
        py, sig = str(header["py"]), str(header["sig"])
    except (ValueError, KeyError, TypeError) as error:
        raise PayloadRejected("payload header is malformed") from error
    payload = blob[8 + size :]
    if not hmac.compare_digest(sig, _sign(secret, py, payload)):
        raise PayloadRejected(
            "payload signature does not match this runtime's secret "
            "(tampered, or signed with another NBFLOW_SECRET)"
        )
    if py != PYTHON:
        raise PayloadRejected(
            f"payload was pickled by Python {py}; this worker runs Python {PYTHON}"
        )
    return payload


def digest(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()[:32]


def _sign(secret: bytes, py: str, payload: bytes) -> str:
    mac = _keyed(secret).copy()
    mac.update(py.encode() + b"\0" + payload)
    return mac.hexdigest()


@functools.lru_cache(maxsize=8)
def _keyed(secret: bytes) -> hmac.HMAC:
    """HMAC-SHA256 with ``secret`` already keyed: a copy of it signs a payload in half
    the time of hmac.digest, and stays that fast with many threads signing at once
    (hmac.digest slows down with every thread that calls it)."""
    return hmac.new(secret, digestmod=hashlib.sha256)
