"""The offline model's faults and counters: shared by its server and the handle that drives it.

Kept apart from `offline` and `_offline_app` so that neither imports the other
for them.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from dataclasses import dataclass, replace
from typing import Literal, get_args

from nbflow.errors import ConfigError

FaultKind = Literal["429", "500", "slow_first_token", "cut_stream"]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
ENDPOINTS = ("chat.completions", "responses", "embeddings", "models")


@dataclass(frozen=True)
class Fault:
    kind: str
    count: int = 1
    retry_after_s: float = 1.0
    delay_s: float = 1.0
    after_chunks: int = 1

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ConfigError(f"unknown fault kind {self.kind!r}; expected one of {FAULT_KINDS}")
        if self.count < 1 or self.after_chunks < 0:
            raise ConfigError("fault count must be >= 1 and after_chunks >= 0")
        if not (0 <= self.retry_after_s < math.inf and 0 <= self.delay_s < math.inf):
            raise ConfigError("fault retry_after_s and delay_s must be finite and >= 0")

    @classmethod
    def from_json(cls, data: object) -> Fault:
        if not isinstance(data, dict) or "kind" not in data:
            raise ConfigError('a fault is a JSON object with at least a "kind"')
        unknown = set(data) - {"kind", "count", "retry_after_s", "delay_s", "after_chunks"}
        if unknown:
            raise ConfigError(f"unknown fault fields: {sorted(unknown)}")
        try:
            return cls(
                kind=str(data["kind"]),
                count=int(data.get("count", 1)),
                retry_after_s=float(data.get("retry_after_s", 1.0)),
                delay_s=float(data.get("delay_s", 1.0)),
                after_chunks=int(data.get("after_chunks", 1)),
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"bad fault field: {exc}") from exc

    def applies_to(self, *, stream: bool) -> bool:
        # Only a stream can be cut; a cut queued for the next stream waits for one.
        return stream or self.kind != "cut_stream"


class FaultQueue:
    """Faults waiting for the next requests; the app thread and the caller's thread share it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: list[Fault] = []

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._queue.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()

    def pending(self) -> list[Fault]:
        with self._lock:
            return list(self._queue)

    def take(self, *, stream: bool) -> Fault | None:
        with self._lock:
            for i, fault in enumerate(self._queue):
                if fault.applies_to(stream=stream):
                    if fault.count == 1:
                        del self._queue[i]
                    else:
                        self._queue[i] = replace(fault, count=fault.count - 1)
                    return fault
        return None


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()

    def count_request(self, endpoint: str) -> None:
        with self._lock:
            self._requests[endpoint] += 1

    def count_fault(self, kind: str) -> None:
        with self._lock:
            self._faults[kind] += 1

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._faults.clear()

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {
                "requests": {name: self._requests[name] for name in ENDPOINTS},
                "faults": {kind: self._faults[kind] for kind in FAULT_KINDS},
            }
