"""Cache keys and the in-process cache store.

A key covers the component's name, a digest of its code and a canonical form of
its arguments, so editing a component in a notebook never serves stale results.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import json
import threading
import time
import types
from collections.abc import Mapping
from typing import Any

from .errors import CacheKeyError


def code_digest(fn: Any) -> str:
    code = getattr(fn, "__code__", None)
    h = hashlib.blake2b(digest_size=8)
    if code is None:
        h.update(repr(fn).encode())
    else:
        _hash_code(h, code)
    return h.hexdigest()


def _hash_code(h: Any, code: types.CodeType) -> None:
    h.update(code.co_code)
    h.update(repr(code.co_names).encode())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _hash_code(h, const)
        else:
            h.update(repr(const).encode())


_SCALARS = (bool, int, float, str)  # a tuple: a union would be built on every call


def canonical(value: Any, path: str) -> Any:
    """A JSON-able, order-independent form of ``value``; CacheKeyError names ``path``."""
    if value is None or isinstance(value, _SCALARS):
        return value
    if isinstance(value, bytes):
        return {"bytes": hashlib.sha256(value).hexdigest()}
    if isinstance(value, enum.Enum):
        return {"enum": f"{type(value).__qualname__}.{value.name}"}
    if isinstance(value, dt.date | dt.datetime | dt.time):
        return {"time": value.isoformat()}
    if isinstance(value, list | tuple):
        return [canonical(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, set | frozenset):
        items = [canonical(v, f"{path}{{}}") for v in value]
        return {"set": sorted(items, key=_json_sort_key)}
    if isinstance(value, Mapping):
        # Keys keep their type ({1: x} and {"1": x} differ) and pairs sort by their JSON
        # form, which never compares values of different types.
        pairs = [[canonical(k, path), canonical(v, f"{path}[{k!r}]")] for k, v in value.items()]
        return {"map": sorted(pairs, key=_json_sort_key)}
    return _canonical_object(value, path)


def _json_sort_key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _canonical_object(value: Any, path: str) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return {type(value).__qualname__: canonical(fields, path)}
    dump = getattr(value, "model_dump", None)  # pydantic models
    if callable(dump):
        return {type(value).__qualname__: canonical(dump(), path)}
    raise CacheKeyError(
        f"argument {path!r} ({type(value).__name__}) cannot be part of a cache key; "
        "pass with_cache(ignore=(...)) to leave it out "
        "or with_cache(key=fn) to build the key yourself"
    )


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


def digest(obj: Any) -> str:
    text = _ENCODER.encode(obj)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


class MemoryCache:
    """The cache used with no runtime: a dict with expiry, shared by the process."""

    def __init__(self) -> None:
        self._items: dict[str, tuple[float | None, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[bool, Any]:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return False, None
            expires, value = item
            if expires is not None and expires < time.monotonic():
                del self._items[key]
                return False, None
            return True, value

    def set(self, key: str, value: Any, ttl_s: float | None) -> None:
        expires = None if ttl_s is None else time.monotonic() + ttl_s
        with self._lock:
            self._items[key] = (expires, value)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


local_cache = MemoryCache()
