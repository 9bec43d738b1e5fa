"""The ``nbflow`` command: thin sub-commands over the runtime, API and views."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence


def _worker(args: argparse.Namespace) -> int:
    from .constants import WORKER_RESTART_EXIT
    from .runtime.worker import Worker, WorkerOptions

    url = args.redis or _default_url()
    options = WorkerOptions(
        concurrency=args.concurrency,
        drain_timeout_s=args.drain_timeout,
        lease_ms=args.lease_ms,
        heartbeat_ms=max(50, args.lease_ms // 5),
        sweep_interval_ms=max(50, args.lease_ms // 5),
        max_restarts=args.max_restarts,
        stuck_grace_s=args.stuck_grace_s,
        restart_when_stuck=True,
    )
    code = Worker(url, app=args.app, options=options).run()
    # Threads still inside handed-back sync steps must not keep the process alive.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    if code == WORKER_RESTART_EXIT:
        # A thread that will not stop (a cancelled run that never yields) ends only with
        # the process: start afresh in place, same pid, same arguments.
        os.execv(sys.executable, [sys.executable, "-m", "nbflow.cli", *sys.argv[1:]])
    os._exit(code)


def _default_url() -> str:
    from .constants import ENV_REDIS_URL

    url = os.environ.get(ENV_REDIS_URL)
    if url:
        return url
    from .runtime import embedded

    return embedded.ensure_server()


def _add_worker(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .constants import (
        DRAIN_TIMEOUT_S,
        LEASE_MS,
        MAX_RESTARTS,
        STUCK_GRACE_S,
        WORKER_CONCURRENCY,
    )

    p = sub.add_parser("worker", help="run a worker process (claims and executes runs)")
    p.add_argument(
        "--redis", help="Redis URL (default: NBFLOW_REDIS_URL, else the embedded server)"
    )
    p.add_argument("--concurrency", type=int, default=WORKER_CONCURRENCY, help="runs at once")
    p.add_argument("--app", help="importable module whose workflows this worker serves by name")
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=DRAIN_TIMEOUT_S,
        help="seconds in-flight runs get to finish on SIGTERM before they are handed back",
    )
    p.add_argument(
        "--lease-ms",
        type=int,
        default=LEASE_MS,
        help="a run whose worker is silent this long is restarted elsewhere",
    )
    p.add_argument(
        "--max-restarts",
        type=int,
        default=MAX_RESTARTS,
        help="restarts after lost workers before a run fails with reason worker_lost",
    )
    p.add_argument(
        "--stuck-grace-s",
        type=float,
        default=STUCK_GRACE_S,
        help="a cancelled run whose code has not stopped after this long restarts the worker",
    )
    p.set_defaults(func=_worker)


def _api(args: argparse.Namespace) -> int:
    from .api import server

    problem = server.refusal(args.host, server.configured_token())
    if problem:  # before --redis defaults to the embedded server, which would start it
        print(f"nbflow api: {problem}", file=sys.stderr)
        return 2
    url = args.redis or _default_url()
    return server.serve(url, host=args.host, port=args.port, app_module=args.app)


def _add_api(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .api.server import DEFAULT_HOST, DEFAULT_PORT

    p = sub.add_parser("api", help="serve workflows and runs over HTTP (REST, SSE)")
    p.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help="address to bind; other than loopback it needs NBFLOW_API_TOKEN",
    )
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to bind")
    p.add_argument("--app", help="importable module whose workflows are served by name")
    p.add_argument("--redis", help="Redis URL (default: NBFLOW_REDIS_URL, else the embedded one)")
    p.set_defaults(func=_api)


def _doctor(args: argparse.Namespace) -> int:
    from .runtime.connection import is_cluster, sync_client
    from .runtime.doctor import Doctor

    url = args.redis or _default_url()
    client = sync_client(url, cluster=is_cluster(url))
    try:
        findings = Doctor(client).examine(repair=args.repair)
    finally:
        client.close()
    for finding in findings:
        print(finding)
    if not findings:
        print("nbflow doctor: nothing wrong: every run that has not ended is queued or leased")
        return 0
    repaired = sum(f.repaired for f in findings)
    print(f"nbflow doctor: {len(findings)} finding(s), {repaired} repaired", end="")
    print("" if args.repair else "; run `nbflow doctor --repair` to repair them")
    return 0 if args.repair else 1


def _add_doctor(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "doctor", help="check that every run is queued, leased or ended, and keys expire"
    )
    p.add_argument("--repair", action="store_true", help="fix what it finds")
    p.add_argument(
        "--redis", help="Redis URL (default: NBFLOW_REDIS_URL, else the embedded server)"
    )
    p.set_defaults(func=_doctor)


COMMANDS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = [
    _add_worker,
    _add_api,
    _add_doctor,
]


def _add_runtime_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from ._commands import add_commands

    add_commands(sub)


COMMANDS.append(_add_runtime_commands)


def _add_answer_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from ._answer import add_commands

    add_commands(sub)


COMMANDS.append(_add_answer_command)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nbflow", description="Durable AI-agent workflows from Jupyter."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # nbflow's own news at INFO; other libraries' (an HTTP client's line per LLM call)
    # only when they warn, unless -v.
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    if not args.verbose:
        logging.getLogger("nbflow").setLevel(logging.INFO)
    from .errors import NbflowError

    try:
        result: int = args.func(args)
    except NbflowError as error:  # a user's mistake or a missing server: say so, no traceback
        print(f"nbflow {args.command}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
