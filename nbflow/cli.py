"""The ``nbflow`` command: thin sub-commands over the runtime, API and views."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from . import _cliargs as types
from ._appimport import import_app

if TYPE_CHECKING:
    from .runtime.client import Runtime


def _worker(args: argparse.Namespace) -> int:
    from .constants import WORKER_RESTART_EXIT
    from .runtime.worker import Worker, WorkerOptions

    if args.app:
        import_app(args.app)
    url = redis_url_for(args)
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


def redis_url_for(args: argparse.Namespace) -> str:
    """``--redis``, else ``NBFLOW_REDIS_URL``, else the embedded server (started if need be)."""
    url = types.given_url(args)
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
        "--redis",
        type=types.redis_url,
        help="Redis URL (default: NBFLOW_REDIS_URL, else the embedded server)",
    )
    p.add_argument(
        "--concurrency",
        type=types.positive_int,
        default=WORKER_CONCURRENCY,
        help=f"runs at once (default {WORKER_CONCURRENCY})",
    )
    p.add_argument("--app", help="importable module whose workflows this worker serves by name")
    p.add_argument(
        "--drain-timeout",
        type=types.non_negative_float,
        default=DRAIN_TIMEOUT_S,
        help="seconds in-flight runs get to finish on SIGTERM before they are handed back",
    )
    p.add_argument(
        "--lease-ms",
        type=types.positive_int,
        default=LEASE_MS,
        help="a run whose worker is silent this long is restarted elsewhere",
    )
    p.add_argument(
        "--max-restarts",
        type=types.non_negative_int,
        default=MAX_RESTARTS,
        help="restarts after lost workers before a run fails with reason worker_lost",
    )
    p.add_argument(
        "--stuck-grace-s",
        type=types.non_negative_float,
        default=STUCK_GRACE_S,
        help="a cancelled run whose code has not stopped after this long restarts the worker",
    )
    p.set_defaults(func=_worker)


def _api(args: argparse.Namespace) -> int:
    from .api import server
    from .api.auth import configured_token

    problem = server.refusal(args.host, configured_token())
    if problem:  # before anything starts the embedded runtime
        print(f"nbflow api: {problem}", file=sys.stderr)
        return 2
    if args.app:
        import_app(args.app)
    return server.serve(
        _api_runtime(args),
        host=args.host,
        port=args.port,
        app_module=args.app,
        max_streams=args.max_streams,
    )


def _api_runtime(args: argparse.Namespace) -> Runtime:
    from .runtime.client import Runtime, connect

    url = types.given_url(args)
    if url:
        return Runtime(url)
    # The embedded default, as a notebook's submit starts it: the server and the worker
    # pool. Workflows of an --app module the pool cannot import (one in this directory)
    # then travel by value with each run.
    runtime = connect()
    if args.app and runtime.pool_home is not None:
        _ship_app_by_value(args.app, runtime.pool_home)
    print(
        f"nbflow api: on the embedded runtime ({runtime.url}) with its worker pool; "
        "`nbflow down` stops them",
        file=sys.stderr,
    )
    return runtime


def _ship_app_by_value(app: str, pool_home: Path) -> None:
    """Every module loaded from the app's directory that the pool cannot import travels
    by value: the app's own, and the modules beside it that its workflows use."""
    from .runtime.locality import ship_by_value_unless_importable

    top = sys.modules[app.partition(".")[0]]
    where = getattr(top, "__file__", None)
    if where is None:
        return
    app_dir = Path(where).resolve().parent
    if hasattr(top, "__path__"):  # a package: its directory's parent holds it
        app_dir = app_dir.parent
    for name, module in list(sys.modules.items()):
        found = getattr(module, "__file__", None)
        if "." not in name and found and Path(found).resolve().is_relative_to(app_dir):
            ship_by_value_unless_importable(name, pool_home)


def _add_api(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .api.server import DEFAULT_HOST, DEFAULT_PORT
    from .constants import API_MAX_STREAMS

    p = sub.add_parser("api", help="serve workflows and runs over HTTP (REST, SSE)")
    p.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help="address to bind; other than loopback it needs NBFLOW_API_TOKEN",
    )
    p.add_argument(
        "--port", type=types.port, default=DEFAULT_PORT, help=f"port to bind ({DEFAULT_PORT})"
    )
    p.add_argument(
        "--app",
        help="module whose workflows are served by name (found in this directory "
        "or among the installed packages)",
    )
    p.add_argument(
        "--redis",
        type=types.redis_url,
        help="Redis URL (default: NBFLOW_REDIS_URL, else the embedded runtime, "
        "whose server and worker pool it starts)",
    )
    p.add_argument(
        "--max-streams",
        type=types.positive_int,
        default=API_MAX_STREAMS,
        help="requests following a run at once (event streams, waits); 503 past it",
    )
    p.set_defaults(func=_api)


def _doctor(args: argparse.Namespace) -> int:
    from ._commands import runtime_for
    from .runtime.doctor import Doctor

    runtime = runtime_for(args)  # a stopped embedded runtime is said so, not started
    try:
        findings = Doctor(runtime.redis).examine(repair=args.repair)
    finally:
        runtime.close()
    for finding in findings:
        print(finding)
    if not findings:
        print(
            "nbflow doctor: nothing wrong: every run that has not ended is queued, "
            "leased, or waiting with something to wake it"
        )
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
        "--redis",
        type=types.redis_url,
        help="Redis URL (default: NBFLOW_REDIS_URL, else the embedded server)",
    )
    p.set_defaults(func=_doctor)


def _export(args: argparse.Namespace) -> int:
    import math
    import signal
    import threading

    from ._commands import runtime_for
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
    runtime = runtime_for(args)
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
    p.add_argument(
        "--redis",
        type=types.redis_url,
        help="Redis URL (default: NBFLOW_REDIS_URL, else the embedded server)",
    )
    p.add_argument("--name", default="otel", help="names what this exporter has sent")
    since = p.add_mutually_exclusive_group()
    since.add_argument(
        "--since-s",
        type=types.non_negative_float,
        help="on a first start, also send runs that ended and were created this recently",
    )
    since.add_argument(
        "--all", action="store_true", help="on a first start, also send every ended run kept"
    )
    p.add_argument(
        "--interval-s",
        type=types.non_negative_float,
        default=EXPORT_INTERVAL_S,
        help="how often to look for runs that ended",
    )
    p.add_argument(
        "--timeout-s",
        type=types.non_negative_float,
        default=OTLP_TIMEOUT_S,
        help="how long one export may take",
    )
    p.add_argument("--project", help="the Phoenix project the traces land in")
    p.add_argument("--service-name", default="nbflow", help="service.name of the spans")
    p.add_argument("--once", action="store_true", help="send what has ended, then exit")
    p.set_defaults(func=_export)


COMMANDS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = [
    _add_worker,
    _add_api,
    _add_doctor,
    _add_export,
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
    from ._version import __version__

    parser = argparse.ArgumentParser(
        prog="nbflow", description="Durable AI-agent workflows from Jupyter."
    )
    parser.add_argument("--version", action="version", version=f"nbflow {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help="one of:")
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
    from redis.exceptions import RedisError

    from .errors import NbflowError

    try:
        result: int = args.func(args)
    except NbflowError as error:  # a user's mistake or a missing server: say so, no traceback
        print(f"nbflow {args.command}: {error}", file=sys.stderr)
        return 2
    except RedisError as error:
        print(f"nbflow {args.command}: Redis error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
