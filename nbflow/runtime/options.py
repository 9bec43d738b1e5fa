"""A worker's options, documented where they are declared."""

from __future__ import annotations

from dataclasses import dataclass

from .. import constants as c


@dataclass
class WorkerOptions:
    """How a worker serves runs.

    :param concurrency: runs at once (one thread each; async runs share one loop).
    :param lease_ms: a run whose worker is silent this long is restarted elsewhere.
    :param heartbeat_ms: how often leases are renewed (well under ``lease_ms``).
    :param sweep_interval_ms: how often this worker looks for runs that lost theirs.
    :param drain_timeout_s: on SIGTERM, how long runs get to end before they are handed back.
    :param max_restarts: a run whose worker died this many times fails (``worker_lost``).
    :param retention_s: finished runs' keys expire after this.
    :param max_log_events: one run's log is capped here, with a marker.
    :param max_event_bytes: one event is at most this large; larger fields are cut.
    :param stuck_grace_s: a cancelled run whose code has not stopped after this long (or
        a timed-out step still running this long after its run ended) makes the worker
        restart itself when ``restart_when_stuck``; otherwise the thread is abandoned.
    :param restart_when_stuck: set by ``nbflow worker``, whose process can restart.
    """

    concurrency: int = c.WORKER_CONCURRENCY
    lease_ms: int = c.LEASE_MS
    heartbeat_ms: int = c.HEARTBEAT_MS
    sweep_interval_ms: int = c.SWEEP_INTERVAL_MS
    drain_timeout_s: float = c.DRAIN_TIMEOUT_S
    max_restarts: int = c.MAX_RESTARTS
    retention_s: int = c.RETENTION_S
    max_log_events: int = c.MAX_LOG_EVENTS
    max_event_bytes: int = c.MAX_EVENT_BYTES
    stuck_grace_s: float = c.STUCK_GRACE_S
    loop_blocked_s: float = c.LOOP_BLOCKED_S
    restart_when_stuck: bool = False
