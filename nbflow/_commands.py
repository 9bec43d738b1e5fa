"""``nbflow up | down | status | runs | logs | demo``."""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from . import _cliargs as types

if TYPE_CHECKING:
    from .runtime.client import Runtime

DOWN_REPORT_S = 5.0  # how often `down` says which runs it still waits for
ACTIVE_RUNS = 1_000  # running runs that `status` and `down` name at most


def _up(args: argparse.Namespace) -> int:
    from .constants import EMBEDDED_WORKERS
    from .runtime import embedded, pool

    server_before = embedded.server_status()
    pool_before = pool.pool_status()
    url = embedded.ensure_server()
    pid = pool.ensure_pool(url, workers=args.workers or EMBEDDED_WORKERS)
    if pool_before["running"] and pool_before["supervisor_pid"] == pid:
        _say_already_running(url, pid, len(pool_before["workers"]), args.workers)
        return 0
    server_kept = (
        server_before["running"] and embedded.server_status()["pid"] == server_before["pid"]
    )
    print(
        f"nbflow runtime up: server {url} ({'already running' if server_kept else 'started'}), "
        f"worker pool pid {pid} started ({args.workers or EMBEDDED_WORKERS} workers)"
    )
    return 0


def _say_already_running(url: str, pid: int, workers: int, asked: int | None) -> None:
    print(
        f"nbflow runtime already running: server {url}, worker pool pid {pid} ({workers} workers)"
    )
    if asked and asked != workers:
        print(
            f"--workers {asked} not applied: a running pool keeps its size "
            f"(`nbflow down`, then `nbflow up --workers {asked}`)"
        )


def _down(args: argparse.Namespace) -> int:
    from .runtime import embedded, pool

    stopped_pool = pool.stop_pool(timeout_s=0) if args.force else _drain_pool()
    stopped_server = embedded.stop_server()
    print(
        f"worker pool {'stopped' if stopped_pool else 'was not running'}; "
        f"server {'stopped (data kept)' if stopped_server else 'was not running'}"
    )
    return 0


def _drain_pool() -> bool:
    """Stop the pool as its workers drain, saying which runs they are waiting for."""
    from .constants import DRAIN_TIMEOUT_S
    from .runtime import pool

    runtime = _embedded_runtime_if_running()
    running = _running(runtime) if runtime and pool.pool_status()["running"] else []
    if running:
        print(
            f"waiting up to {DRAIN_TIMEOUT_S:g} s for {_runs_named(running)} to finish; "
            "then they are handed back and go on at the next `nbflow up`. "
            "`nbflow down --force` stops at once.",
            flush=True,  # shown while it waits, also through a pipe
        )
    outcome: dict[str, bool] = {}
    stopper = threading.Thread(target=lambda: outcome.update(stopped=pool.stop_pool()), daemon=True)
    stopper.start()
    try:
        while stopper.is_alive():
            stopper.join(DOWN_REPORT_S)
            if running and stopper.is_alive() and runtime is not None:
                running = _report_still_running(runtime, running)
    except KeyboardInterrupt:
        print(
            "\nstopped waiting: the pool goes on draining by itself and the server keeps "
            "running (`nbflow down --force` stops both now)",
            file=sys.stderr,
        )
        raise
    finally:
        if runtime is not None:
            runtime.close()
    return outcome.get("stopped", False)


def _report_still_running(runtime: Runtime, before: list[str]) -> list[str]:
    now = _running(runtime)
    if now and now != before:
        print(f"still waiting for {_runs_named(now)}", flush=True)
    return now


def _runs_named(run_ids: list[str]) -> str:
    shown = " ".join(run_ids[:5]) + (f" and {len(run_ids) - 5} more" if len(run_ids) > 5 else "")
    return f"{len(run_ids)} running run{'s' if len(run_ids) != 1 else ''} ({shown})"


def _running(runtime: Runtime) -> list[str]:
    from .runtime.listing import RunQuery, list_runs

    page = list_runs(runtime.redis, RunQuery(status="running"), limit=ACTIVE_RUNS)
    return [m["run_id"] for m in page.runs]


def _embedded_runtime_if_running() -> Runtime | None:
    from .runtime import embedded
    from .runtime.client import Runtime

    server = embedded.server_status()
    if not server["running"]:
        return None
    return Runtime(server["url"], cluster=False)


def _status(args: argparse.Namespace) -> int:
    from .runtime import embedded, pool

    info: dict[str, Any] = {"server": embedded.server_status(), "pool": pool.pool_status()}
    runtime = _embedded_runtime_if_running()
    if runtime is not None:
        try:
            info["queue_depth"] = runtime.queue_depth()
            info["active_runs"] = len(_running(runtime))
            info["live_workers"] = runtime.workers()
        finally:
            runtime.close()
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    _print_status(info)
    return 0


def _print_status(info: dict[str, Any]) -> None:
    server, workers = info["server"], info["pool"]
    if server.get("running"):
        print(f"server   running  pid {server.get('pid')}  {server.get('url') or ''}")
    else:
        print("server   stopped  (`nbflow up` starts it)")
    print(f"         data {server['data_dir']} ({server.get('aof_bytes', 0)} bytes)")
    if workers.get("running"):
        print(f"pool     running  supervisor pid {workers.get('supervisor_pid')}")
    else:
        print("pool     stopped  (`nbflow up` starts it; runs wait in the queue until then)")
    for w in workers.get("workers", []):
        print(f"         worker {w['slot']}  pid {w['pid']}  {'alive' if w['alive'] else 'dead'}")
    if "queue_depth" in info:
        print(f"queue    {info['queue_depth']} waiting   active runs {info['active_runs']}")


def _runs(args: argparse.Namespace) -> int:
    from .console import print_runs
    from .runtime.listing import RunQuery, list_runs
    from .runtime.views import run_row

    rt = runtime_for(args)
    since = None if args.since_s is None else time.time() - args.since_s
    query = RunQuery(args.status, args.workflow, since, args.parent)
    page = list_runs(rt.redis, query, limit=args.limit, cursor=args.cursor)
    print_runs([run_row(m) for m in page.runs])
    if page.next_cursor:
        print(f"more: nbflow runs --cursor {page.next_cursor} (with the same filters)")
    return 0


def runtime_for(args: argparse.Namespace) -> Runtime:
    """The runtime at ``--redis`` or NBFLOW_REDIS_URL, else the embedded one if it runs:
    reading runs never starts a stopped runtime."""
    from .errors import RuntimeUnavailable
    from .runtime import embedded
    from .runtime.client import connect

    url = types.given_url(args)
    if url is None and not embedded.server_status()["running"]:
        raise RuntimeUnavailable(
            "the embedded runtime is stopped; `nbflow up` starts it (its runs and logs are kept)"
        )
    return connect(url, start_workers=False)


def _logs(args: argparse.Namespace) -> int:
    from .console import LivePrinter, summary

    rt = runtime_for(args)
    run = rt.attach(args.run)
    printer = LivePrinter(run.id)
    state = printer.feed(run.events(follow=args.follow))
    print(summary(state))
    return 0 if state.status in ("succeeded", "running", "queued", "waiting") else 1


def _demo(args: argparse.Namespace) -> int:
    import os

    from .console import LivePrinter, summary
    from .demo import blog_post
    from .runtime.client import connect

    embedded = types.given_url(args) is None
    if embedded:
        print("nbflow demo: starting the embedded runtime (a local Valkey server and worker pool)…")
    if not (os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL")):
        print(
            "No OPENAI_API_KEY or OPENAI_BASE_URL: LLM calls go to nbflow's offline model "
            "(deterministic replies, realistic token counts, no network)."
        )
    rt = connect(args.redis)
    run = blog_post.submit(args.topic)
    print(f"submitted run {run.id} of workflow blog_post on {rt.url}; following it live:\n")
    state = LivePrinter(run.id).feed(run.events())
    print()
    print(run.trace().table())
    print(summary(state))
    print(f"\nre-attach any time: nbflow logs {run.id}   list runs: nbflow runs")
    if embedded:
        print(
            "The embedded runtime keeps running in the background (shared by your notebooks "
            "and shells, so runs outlive them); `nbflow down` stops it, keeping runs and logs."
        )
    return 0 if state.status == "succeeded" else 1


def add_commands(sub: Any) -> None:
    from .constants import DRAIN_TIMEOUT_S, EMBEDDED_WORKERS, RUN_STATUSES

    p = sub.add_parser("up", help="start the embedded runtime (server and worker pool)")
    p.add_argument(
        "--workers",
        type=types.positive_int,
        help=f"worker processes in the pool (default {EMBEDDED_WORKERS}); "
        "a running pool keeps its size",
    )
    p.set_defaults(func=_up)
    p = sub.add_parser("down", help="stop the embedded runtime (runs and logs are kept)")
    p.add_argument(
        "--force",
        action="store_true",
        help=f"stop at once instead of giving running runs up to {DRAIN_TIMEOUT_S:g} s to "
        "finish; they go on at the next `nbflow up`, without repeating finished steps",
    )
    p.set_defaults(func=_down)
    p = sub.add_parser("status", help="server, workers, queue depth and active runs")
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(func=_status)
    p = sub.add_parser("runs", help="list runs, newest first")
    p.add_argument(
        "--limit", type=types.positive_int, default=20, help="how many runs to list (20)"
    )
    p.add_argument("--status", choices=RUN_STATUSES, help="only runs with this status")
    p.add_argument("--workflow", help="only runs of this workflow")
    p.add_argument("--parent", metavar="RUN", help="only runs that run RUN started")
    p.add_argument(
        "--since",
        dest="since_s",
        type=types.non_negative_float,
        metavar="SECONDS",
        help="only runs created in the last SECONDS",
    )
    p.add_argument(
        "--cursor", type=types.cursor, help="go on after the page that printed this cursor"
    )
    p.add_argument("--redis", type=types.redis_url, help=REDIS_HELP)
    p.set_defaults(func=_runs)
    p = sub.add_parser("logs", help="a run's log: progress, spans, tokens, output")
    p.add_argument("run", help="the run's id (see `nbflow runs`)")
    p.add_argument("--follow", "-f", action="store_true", help="keep following until the run ends")
    p.add_argument("--redis", type=types.redis_url, help=REDIS_HELP)
    p.set_defaults(func=_logs)
    p = sub.add_parser("demo", help="run an example workflow on the embedded runtime, live")
    p.add_argument("--topic", default="durable agents", help="what the example post is about")
    p.add_argument(
        "--redis",
        type=types.redis_url,
        help="use this Redis (with workers of your own) instead of the embedded runtime",
    )
    p.set_defaults(func=_demo)


REDIS_HELP = "Redis URL (default: NBFLOW_REDIS_URL, else the embedded runtime, if it runs)"
