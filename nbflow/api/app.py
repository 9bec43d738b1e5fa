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

from .._version import __version__
from . import auth, errors, ui
from .limits import BodyLimit
from .routes import router
from .server import configured_token
from .service import Service
from .sse import KEEP_ALIVE_S

if TYPE_CHECKING:
    from .._workflow import Workflow
    from ..runtime.client import Runtime

MAX_BODY_BYTES = 1_000_000
DESCRIPTION = """\
Every nbflow workflow over HTTP: run one and wait (`POST /workflows/{name}`), start one
(`POST /workflows/{name}/start`), or stream its events (`Accept: text/event-stream`).
Runs are followed at `GET /runs/{id}/events`, resumable with `Last-Event-ID`.
Errors are JSON `{"error": {"type", "message"}}`.
"""


def create_app(
    runtime: Runtime | None = None,
    *,
    app_module: str | None = None,
    token: str | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    keep_alive_s: float = KEEP_ALIVE_S,
) -> FastAPI:
    """The API over ``runtime`` (default: the connected one, see ``nbflow.connect``).

    ``app_module`` names a module whose workflows are served by name (its workers
    run ``nbflow worker --app`` with the same module); deployed workflows are
    served too. ``token`` (default ``NBFLOW_API_TOKEN``) turns bearer auth on.
    """
    registry = _registry(app_module)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        connected = runtime if runtime is not None else await to_thread.run_sync(_connected)
        app.state.service = Service.open(connected, registry)
        try:
            yield
        finally:
            await app.state.service.close()

    required = configured_token(token)
    app = FastAPI(title="nbflow", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.keep_alive_s = keep_alive_s
    # Set when the server begins to shut down (see server.py): waiting requests answer at once.
    app.state.draining = asyncio.Event()
    if required:
        app.include_router(router, dependencies=[auth.require(required)], responses=auth.RESPONSES)
    else:
        app.include_router(router)
    errors.install(app)
    ui.install(app)
    app.add_middleware(BodyLimit, max_body_bytes=max_body_bytes)
    return app


def _registry(app_module: str | None) -> dict[str, Workflow]:
    if not app_module:
        return {}
    from ..runtime.catalog import load_app

    return load_app(app_module)


def _connected() -> Runtime:
    from ..runtime.client import get_runtime

    return get_runtime()
