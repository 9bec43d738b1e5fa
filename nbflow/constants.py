"""Every name and default nbflow shares between processes: one home for all of them.

Redis keys of one run share the hash tag ``{<run_id>}`` so that a run lives on
one Redis Cluster slot and its keys can change together in one transaction.
"""

from __future__ import annotations

PREFIX = "nbflow"

# --- global keys -----------------------------------------------------------
WORK_STREAM = f"{PREFIX}:work"  # run requests, read by the worker group
WORK_GROUP = "workers"
RUNS_INDEX = f"{PREFIX}:runs"  # zset run_id -> created_at (s)
LEASES = f"{PREFIX}:leases"  # zset run_id -> lease expiry (ms)
WORKERS = f"{PREFIX}:workers"  # zset worker_id -> last heartbeat (ms)
WAKEUPS = f"{PREFIX}:wakeups"  # zset run_id -> when to look at a waiting run (ms)
CODE_KEY = PREFIX + ":code:{digest}"  # signed shipped code, content-addressed
CACHE_KEY = PREFIX + ":cache:{key}"
DEPLOYED = f"{PREFIX}:deployed"  # hash workflow name -> code digest
RATE_KEY = PREFIX + ":rate:{scope}"
# `nbflow export`: per exporter name, where it has read up to and which runs it sent.
# A notebook output that nbflow's JupyterLab renderer draws from the server: the kernel
# that displayed it stops following its run until the run ends.
OUTPUT_DRAWN = PREFIX + ":output:{view}"
OUTPUT_DRAWN_TTL_S = 24 * 3600
EXPORT_CURSOR = PREFIX + ":export:{name}:cursor"  # created_at (s) of the oldest run not yet sent
EXPORT_DONE = PREFIX + ":export:{name}:done"  # zset run_id -> sent at (s), trimmed by retention


# --- per-run keys (one hash slot per run) -----------------------------------
def run_log(run_id: str) -> str:
    return f"{PREFIX}:{{{run_id}}}:log"


def run_meta(run_id: str) -> str:
    return f"{PREFIX}:{{{run_id}}}:meta"


def run_steps(run_id: str) -> str:
    return f"{PREFIX}:{{{run_id}}}:steps"


def run_lease(run_id: str) -> str:
    return f"{PREFIX}:{{{run_id}}}:lease"


def run_sweep_lock(run_id: str) -> str:
    return f"{PREFIX}:{{{run_id}}}:sweep"


# --- defaults --------------------------------------------------------------
RETENTION_S = 7 * 24 * 3600  # finished runs expire after this
MAX_LOG_EVENTS = 1_000_000  # one run's stream is capped here, with a marker
LEASE_MS = 5_000
HEARTBEAT_MS = 1_000
SWEEP_INTERVAL_MS = 1_000
SWEEP_LOCK_MS = 5_000
RECLAIM_IDLE_MS = 10_000  # work messages claimed by a dead consumer
DEAD_WORKER_MS = 60_000  # a worker silent this long leaves the workers index and the group
MAX_RESTARTS = 3  # a run whose worker died holding it this many times fails (worker_lost)
DRAIN_TIMEOUT_S = 30.0
WORKER_CONCURRENCY = 32  # runs at once per worker; agent runs mostly wait on I/O
EMBEDDED_WORKERS = 2

# A worker whose event loop for async runs does not answer for this long logs the
# blocking stack and adds a warning event to the runs on it.
LOOP_BLOCKED_S = 5.0
# A run asked to cancel whose code has not stopped after this long (it never yields:
# a sync call that never returns) is recorded cancelled; a worker process then hands
# back its other runs and restarts itself, since a thread cannot be stopped. The same
# holds for a step abandoned by with_timeout that is still running this long after its
# run ended.
STUCK_GRACE_S = 10.0
WORKER_RESTART_EXIT = 75  # `nbflow worker` exits with this to be restarted (EX_TEMPFAIL)

# Retries of a component (``with_retry``, ``retry=``): its defaults.
RETRY_ATTEMPTS = 3  # tries in all, the first included
RETRY_BACKOFF = "exponential"  # or "fixed"
RETRY_INITIAL_S = 0.5
RETRY_MAX_S = 30.0
RETRY_JITTER = 0.1  # each delay is spread by +/- this fraction of itself
# Retries of one LLM provider (``nbflow.llm.Retry``): its defaults.
LLM_MAX_RETRIES = 5  # more attempts after the first
LLM_RETRY_INITIAL_S = 0.5
LLM_RETRY_MAX_S = 30.0
LLM_RETRY_JITTER = 0.25  # downward only: a delay never grows past its curve
LLM_MAX_RETRY_AFTER_S = 120.0  # a server asking for a longer wait counts as down

# Inputs and outputs recorded in spans are cut past this many characters.
MAX_PREVIEW_CHARS = 2_000
# One event in a run's log is at most this large (encoded JSON); larger fields are cut
# with a marker saying how much was left out.
MAX_EVENT_BYTES = 1 << 20
# A run's pickled arguments: larger ones are refused at submit (pass a path or a key).
MAX_ARGS_BYTES = 16 << 20
REDACTED = "[redacted]"

RUN_STATUSES = ("queued", "running", "waiting", "succeeded", "failed", "cancelled")
# A run's metadata: the token of the attempt that holds it (absent when none does).
FENCE_FIELD = "fence"
# Beside its steps' results, a run's steps hash keeps what replays compare against,
# under names no step key can have (step keys start with "/"):
SAID_PREFIX = "~"  # ~<span step>: how many emits/progress marks/publishes it logged
CALL_PREFIX = "@"  # @<span step>#<n>: the name of the n-th call the span made
STATE_PREFIX = "^state:"  # ^state:<name>: the latest value nf.publish gave that name
REPLAY_RECORDS = (SAID_PREFIX, CALL_PREFIX, STATE_PREFIX)
PUBLISH_INTERVAL_S = 0.1  # nf.publish: publishes this close together go out as one patch
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})

ENV_REDIS_URL = "NBFLOW_REDIS_URL"
ENV_HOME = "NBFLOW_HOME"
ENV_SECRET = "NBFLOW_SECRET"
ENV_API_TOKEN = "NBFLOW_API_TOKEN"
ENV_OTLP_ENDPOINT = "NBFLOW_OTLP_ENDPOINT"

# --- OpenTelemetry export (nbflow/otel) ------------------------------------------
OTLP_TIMEOUT_S = 10.0  # one export, the OTLP exporter's own retries included
EXPORT_INTERVAL_S = 1.0  # how often `nbflow export` looks for runs that ended
EXPORT_RETRY_MAX_S = 60.0  # back-off ceiling while the collector does not answer


# --- the REST API (nbflow/api), per API process ------------------------------
API_MAX_BODY_BYTES = 1_000_000  # larger request bodies get 413
# Requests following a run at once (SSE and NDJSON streams, requests waiting for
# their run): past this, 503 with Retry-After. `nbflow api --max-streams`.
API_MAX_STREAMS = 1_000
# The API's pool for short commands, opened at start and never grown: with one
# connection of its own per run that clients follow, the process holds
# API_REDIS_CONNECTIONS + followed runs, however many clients come and go.
API_REDIS_CONNECTIONS = 10
API_REDIS_WAIT_S = 10.0  # a command waits this long for a free pooled connection, then 503
API_HEADER_TIMEOUT_S = 10.0  # a client must send a request's headers within this
API_CLIENT_NAME = "nbflow-api"  # its connections show in CLIENT LIST as nbflow-api:<pid>


# --- embedded runtime: files under NBFLOW_HOME and their time-outs -----------
HOME_SECRET_FILE = "secret"  # hex signing key, mode 0600
SERVER_LOCK_FILE = ".lock"  # flock: one process starts or stops the server at a time
SERVER_STATE_FILE = "server.json"  # pid and url of the running embedded server
SERVER_CONFIG_FILE = "valkey.conf"
SERVER_SOCKET_FILE = "valkey.sock"
SERVER_LOG_FILE = "valkey.log"
SERVER_DATA_DIR = "data"  # the append-only file lives here
POOL_LOCK_FILE = ".pool.lock"
POOL_STATE_FILE = "pool.json"  # supervisor pid and current worker pids
POOL_LOG_DIR = "logs"  # pool.log and worker-<n>.log
# A new stream node is allocated at this size (Redis 7 and Valkey allocate up to 4 KiB at
# once): a run's log of a few events then holds about 1.3 KB instead of 4.4 KB, and a
# 100,000-event log takes 4 % more. The embedded server is configured so; recommended
# (`stream-node-max-bytes`) for servers of your own.
STREAM_NODE_MAX_BYTES = 1024
SERVER_START_TIMEOUT_S = 10.0
SERVER_STOP_TIMEOUT_S = 10.0
POOL_START_TIMEOUT_S = 10.0
POOL_RESTART_INTERVAL_S = 1.0  # at most one restart per second per worker slot
POOL_KILL_MARGIN_S = 5.0  # past DRAIN_TIMEOUT_S before the pool kills stragglers
ENV_WORKER_CMD = "NBFLOW_WORKER_CMD"  # JSON list overriding the pool's worker command
