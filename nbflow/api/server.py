"""``nbflow api``: the HTTP service under uvicorn, and the rule on where it may bind."""

from __future__ import annotations

import logging
import re
import sys
from typing import TYPE_CHECKING

from .. import constants as c
from .guard import is_loopback

if TYPE_CHECKING:
    from ..runtime.client import Runtime

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
# Open event streams are cut after this on shutdown; their clients resume with Last-Event-ID.
# Requests waiting for a run answer 202 with its id at once (the run goes on without us).
GRACEFUL_SHUTDOWN_S = 5


def refusal(host: str, token: str | None) -> str | None:
    """Why the server must not start on ``host``, or None."""
    if token is None and not is_loopback(host):
        return (
            f"refusing to serve on {host} without a token: anyone who can reach it could start "
            f"and cancel runs. Set {c.ENV_API_TOKEN}, or bind {DEFAULT_HOST}."
        )
    return None


def serve(
    runtime: Runtime,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    app_module: str | None = None,
    max_streams: int = c.API_MAX_STREAMS,
) -> int:
    import uvicorn

    from .app import create_app
    from .auth import configured_token
    from .draining import DrainingServer
    from .protocol import with_header_timeout

    token = configured_token()
    problem = refusal(host, token)
    if problem:
        print(f"nbflow api: {problem}", file=sys.stderr)
        return 2
    app = create_app(runtime, app_module=app_module, token=token, max_streams=max_streams)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=with_header_timeout(c.API_HEADER_TIMEOUT_S),
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    logging.getLogger("uvicorn.access").addFilter(hide_tokens)
    DrainingServer(config, app.state.draining).run()
    return 0


_TOKEN = re.compile(r"([?&]token=)[^&\s]*")


def hide_tokens(record: logging.LogRecord) -> bool:
    """Keep a page's ``?token=`` (see auth.py) out of the access log."""
    if isinstance(record.args, tuple):
        record.args = tuple(
            _TOKEN.sub(r"\1…", arg) if isinstance(arg, str) else arg for arg in record.args
        )
    return True
