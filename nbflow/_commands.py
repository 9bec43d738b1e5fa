"""``nbflow up | down | status | runs | logs | demo``."""

from __future__ import annotations

import argparse
import json
from typing import Any


def _up(args: argparse.Namespace) -> int:
    from .runtime import embedded, pool

    url = embedded.ensure_server()
    pid = pool.ensure_pool(url, workers=args.workers)
    print(f"nbflow runtime up: server {url}, worker pool pid {pid} ({args.workers} workers)")
    return 0


def _down(args: argparse.Namespace) -> int:
    from .runtime import embedded, pool

    stopped_pool = pool.stop_pool()
    stopped_server = embedded.stop_server()
    print(
        f"worker pool {'stopped' if stopped_pool else 'was not running'}; "
        f"server {'stopped (data kept)' if stopped_server else 'was not running'}"
    )
    return 0


def _status(args: argparse.Namespace) -> int:
    from .runtime import embedded, pool
    from .runtime.client import Runtime

    server = embedded.server_status()
    workers = pool.pool_status()
    info: dict[str, Any] = {"server": server, "pool": workers}
    if server.get("running"):
        rt = Runtime(server["url"], cluster=False)
        try:
            metas = rt.metas(rt.run_ids(limit=1000))
            info["queue_depth"] = rt.queue_depth()
            info["active_runs"] = sum(1 for m in metas if m.get("status") == "running")
            info["live_workers"] = rt.workers()
        finally:
            rt.close()
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
    from .runtime.views import run_row

    rt = get_runtime_for(args)
    metas = rt.metas(rt.run_ids(limit=args.limit))
    print_runs([run_row(m) for m in metas])
    return 0


def get_runtime_for(args: argparse.Namespace) -> Any:
    from .runtime.client import connect

    return connect(getattr(args, "redis", None), start_workers=False)


def _logs(args: argparse.Namespace) -> int:
    from .console import LivePrinter, summary

    rt = get_runtime_for(args)
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
    return 0 if state.status == "succeeded" else 1


def add_commands(sub: Any) -> None:
    from .constants import EMBEDDED_WORKERS

    p = sub.add_parser("up", help="start the embedded runtime (server and worker pool)")
    p.add_argument("--workers", type=int, default=EMBEDDED_WORKERS)
    p.set_defaults(func=_up)
    p = sub.add_parser("down", help="stop the embedded runtime (runs and logs are kept)")
    p.set_defaults(func=_down)
    p = sub.add_parser("status", help="server, workers, queue depth and active runs")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_status)
    p = sub.add_parser("runs", help="list runs, newest first")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--redis", help="Redis URL (default: NBFLOW_REDIS_URL, else embedded)")
    p.set_defaults(func=_runs)
    p = sub.add_parser("logs", help="a run's log: progress, spans, tokens, output")
    p.add_argument("run")
    p.add_argument("--follow", "-f", action="store_true", help="keep following until the run ends")
    p.add_argument("--redis")
    p.set_defaults(func=_logs)
    p = sub.add_parser("demo", help="run an example workflow on the embedded runtime, live")
    p.add_argument("--topic", default="durable agents")
    p.add_argument("--redis", help="use this Redis instead of the embedded default")
    p.set_defaults(func=_demo)
