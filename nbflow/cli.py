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


def _export(args: argparse.Namespace) -> int:
    import math
    import signal
    import threading

    from ._commands import get_runtime_for
    from .otel import OtlpExporter
    from .otel.follow import ExportOptions, Follower

    exporter = OtlpExporter(
        args.endpoint,
        service_name=args.service_name,
        project=args.project,
        timeout_s=args.timeout_s,
    )
    since = math.inf if args.all else args.since_s
    options = ExportOptions(name=args.name, since_s=since, interval_s=args.interval_s)
    runtime = get_runtime_for(args)
    follower = Follower(runtime, exporter, options)
    try:
        if args.once:
            print(f"nbflow export: sent {follower.poll()} runs to {exporter.url}")
            return 0
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        logging.getLogger("nbflow.export").info(
            "following %s; sending runs as they end to %s", runtime.url, exporter.url
        )
        follower.run(stop)
        return 0
    finally:
        exporter.close()


def _add_export(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .constants import ENV_OTLP_ENDPOINT, EXPORT_INTERVAL_S, OTLP_TIMEOUT_S

    p = sub.add_parser(
        "export",
        help="send every run, as it ends, to an OpenTelemetry (OTLP/HTTP) endpoint",
        description="Follow the runtime and send each run as one OTLP trace when it ends "
        "(needs pip install 'nbflow[otel]'). Restarted, it goes on where it stopped.",
    )
    p.add_argument(
        "--endpoint",
        help=f"collector base URL or traces URL (default: {ENV_OTLP_ENDPOINT}, "
        "else OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT)",
    )
    p.add_argument("--redis", help="Redis URL (default: NBFLOW_REDIS_URL, else the embedded one)")
    p.add_argument("--name", default="otel", help="names what this exporter has sent")
    since = p.add_mutually_exclusive_group()
    since.add_argument(
        "--since-s",
        type=float,
        help="on a first start, also send runs that ended and were created this recently",
    )
    since.add_argument(
        "--all", action="store_true", help="on a first start, also send every ended run kept"
    )
    p.add_argument("--interval-s", type=float, default=EXPORT_INTERVAL_S, help="poll interval")
    p.add_argument("--timeout-s", type=float, default=OTLP_TIMEOUT_S, help="per export")
    p.add_argument("--project", help="the Phoenix project the traces land in")
    p.add_argument("--service-name", default="nbflow", help="service.name of the spans")
    p.add_argument("--once", action="store_true", help="send what has ended, then exit")
    p.set_defaults(func=_export)


COMMANDS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = [
    _add_worker,
    _add_api,
    _add_export,
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
