"""The ``nbflow`` command: thin sub-commands over the runtime, API and views."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence


def _worker(args: argparse.Namespace) -> int:
    from .runtime.worker import Worker, WorkerOptions

    url = args.redis or _default_url()
    options = WorkerOptions(
        concurrency=args.concurrency,
        drain_timeout_s=args.drain_timeout,
        lease_ms=args.lease_ms,
        heartbeat_ms=max(50, args.lease_ms // 5),
        sweep_interval_ms=max(50, args.lease_ms // 5),
        max_restarts=args.max_restarts,
    )
    code = Worker(url, app=args.app, options=options).run()
    # Threads still inside handed-back sync steps must not keep the process alive.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _default_url() -> str:
    from .constants import ENV_REDIS_URL

    url = os.environ.get(ENV_REDIS_URL)
    if url:
        return url
    from .runtime import embedded

    return embedded.ensure_server()


def _add_worker(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .constants import DRAIN_TIMEOUT_S, LEASE_MS, MAX_RESTARTS, WORKER_CONCURRENCY

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
    p.set_defaults(func=_worker)


def _api(args: argparse.Namespace) -> int:
    from .api import server

    problem = server.refusal(args.host, server.configured_token())
    if problem:  # before --redis defaults to the embedded server, which would start it
        print(f"nbflow api: {problem}", file=sys.stderr)
        return 2
    url = args.redis or _default_url()
    return server.serve(
        url, host=args.host, port=args.port, app_module=args.app, max_streams=args.max_streams
    )


def _add_api(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .api.server import DEFAULT_HOST, DEFAULT_PORT
    from .constants import API_MAX_STREAMS

    p = sub.add_parser("api", help="serve workflows and runs over HTTP (REST, SSE)")
    p.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help="address to bind; other than loopback it needs NBFLOW_API_TOKEN",
    )
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to bind")
    p.add_argument("--app", help="importable module whose workflows are served by name")
    p.add_argument("--redis", help="Redis URL (default: NBFLOW_REDIS_URL, else the embedded one)")
    p.add_argument(
        "--max-streams",
        type=_positive,
        default=API_MAX_STREAMS,
        help="requests following a run at once (event streams, waits); 503 past it",
    )
    p.set_defaults(func=_api)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


COMMANDS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = [
    _add_worker,
    _add_api,
]


def _add_runtime_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from ._commands import add_commands

    add_commands(sub)


COMMANDS.append(_add_runtime_commands)


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
