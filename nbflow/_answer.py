"""``nbflow send RUN NAME VALUE``: answer a run that waits for input (``nf.wait_for_input``)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

SEND_HELP = "answer a run that waits for input (nf.wait_for_input): its value as JSON"
VALUE_HELP = (
    "the answer as JSON: true, 3, '\"ship it\"', '{\"n\": 2}' "
    "(`nbflow runs` shows what each waiting run asks)"
)


def _send(args: argparse.Namespace) -> int:
    try:
        value = json.loads(args.value)
    except ValueError as error:
        print(
            f"nbflow send: VALUE is not JSON ({error}): {args.value!r}; "
            f"a string needs its JSON quotes, e.g. '{json.dumps(args.value)}'",
            file=sys.stderr,
        )
        return 2
    runtime = _runtime(args.redis)
    try:
        run = runtime.attach(args.run)
        run.send_input(args.name, value)  # InputRejected, RunNotFound: one line, exit 2
        print(f"run {run.id}: input {args.name!r} sent; the run is {run.status()}")
    finally:
        runtime.close()
    return 0


def _runtime(url: str | None) -> Any:
    from .runtime.client import connect

    return connect(url, start_workers=False)


def add_commands(sub: Any) -> None:
    p = sub.add_parser("send", help=SEND_HELP, description=SEND_HELP)
    p.add_argument("run", help="the waiting run's id (see `nbflow runs`)")
    p.add_argument("name", help="the input's name, as the workflow asks for it")
    p.add_argument("value", help=VALUE_HELP)
    p.add_argument("--redis", help="Redis URL (default: NBFLOW_REDIS_URL, else embedded)")
    p.set_defaults(func=_send)
