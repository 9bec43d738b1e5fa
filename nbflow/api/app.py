"""The HTTP service: start workflows by name, read runs, and follow their logs.

It only writes run requests (through the runtime client) and reads run streams;
it never talks to workers, so any number of API processes can serve the same runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from anyio import to_thread
from fastapi import FastAPI

from .. import constants as c
from .._version import __version__
from . import docs, errors, openapi, ui
from .auth import TokenAuth, configured_token
from .body import RequestBody
from .guard import LoopbackOnly
from .limits import Streams
from .routes import router
from .service import Service
from .sse import KEEP_ALIVE_S

if TYPE_CHECKING:
    from .._workflow import Workflow
    from ..runtime.client import Runtime

DESCRIPTION = """\
Every nbflow workflow over HTTP: run one and wait (`POST /workflows/{name}`), start one
(`POST /workflows/{name}/start`), or stream its events (`Accept: text/event-stream`).
Runs are followed at `GET /runs/{id}/events`, resumable with `Last-Event-ID`.
Errors are JSON `{"error": {"type", "message"}}`; a method a path does not have is 405.
Request bodies are JSON (`Content-Type: application/json`), numbers finite, and inputs
strict: `"2"` or `true` is not an `int`.
"""


def create_app(
    runtime: Runtime | None = None,
    *,
    app_module: str | None = None,
    token: str | None = None,
    max_body_bytes: int = c.API_MAX_BODY_BYTES,
    max_streams: int = c.API_MAX_STREAMS,
    keep_alive_s: float = KEEP_ALIVE_S,
    show_paths: bool = False,
) -> FastAPI:
    """The API over ``runtime`` (default: the connected one, see ``nbflow.connect``).

    ``app_module`` names a module whose workflows are served by name (its workers
    run ``nbflow worker --app`` with the same module); deployed workflows are
    served too. ``token`` (default ``NBFLOW_API_TOKEN``) turns bearer auth on;
    without one, only loopback Host names and same-origin pages are served.
    ``max_streams`` bounds the requests that follow a run at once (503 past it).
    ``show_paths`` lets error messages keep the file-system paths they name.
    """
    registry = _registry(app_module)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        connected = runtime if runtime is not None else await to_thread.run_sync(_connected)
        app.state.service = Service.open(connected, registry)
        await app.state.service.warm()
        try:
            yield
        finally:
            await app.state.service.close()

    required = configured_token(token)
    app = FastAPI(
        title="nbflow",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served from the package by docs.py, not from a CDN
        redoc_url=None,
    )
    app.state.keep_alive_s = keep_alive_s
    app.state.streams = Streams(max_streams)
    # Set when the server begins to shut down (see server.py): waiting requests answer at
    # once, and event streams end (their clients resume elsewhere with Last-Event-ID).
    app.state.draining = asyncio.Event()
    app.include_router(router)
    errors.install(app, show_paths=show_paths)
    docs.install(app)
    ui.install(app)
    openapi.install(app, token=required is not None)
    # The last added runs first: auth (or the loopback guard), then the body rules.
    app.add_middleware(RequestBody, max_body_bytes=max_body_bytes)
    if required:
        app.add_middleware(TokenAuth, token=required)
    else:
        app.add_middleware(LoopbackOnly)
    return app


def _registry(app_module: str | None) -> dict[str, Workflow]:
    if not app_module:
        return {}
    from ..runtime.catalog import load_app

    return load_app(app_module)


def _connected() -> Runtime:
    from ..runtime.client import get_runtime

    return get_runtime()
