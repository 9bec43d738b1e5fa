"""The server extension's routes: the REST API's ``/runs`` routes, under Jupyter's own auth.

They read Redis directly (never a kernel), so the runs panel and run outputs stay
live while no kernel runs. The pieces the REST API uses to read runs and follow
their logs (``Service``, its ``Hub`` and the SSE framing) are reused as they are.
Two more: ``runs/{id}/bundle``, a run's notebook output as its log says now (the
renderer saves it into the notebook when the run ends), and ``ui``, the viewer as
a page of its own (where Notebook 7 opens a run: its main area shows only the
notebook).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from typing import Any

from anyio import to_thread
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from pydantic import ValidationError
from tornado import web
from tornado.iostream import StreamClosedError

from .. import constants as c
from .._events import parse_id
from ..api import ui, views
from ..api.errors import ApiError, field_errors, invalid_input
from ..api.models import InputBody, RunFilter
from ..api.service import Service, check_id
from ..api.sse import HEADERS, KEEP_ALIVE_S, SSE, SSE_KEEP_ALIVE, sse_frame
from ..runtime.client import Runtime
from ..runtime.run import Run
from .display import run_bundle

BASE = "nbflow/api"
POLL_CLOSED_S = 1.0  # how often a quiet event stream checks that its client is still there


class Backend:
    """The runtime the handlers read, connected on first use (starting no workers)."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url
        self._service: Service | None = None
        self._lock = asyncio.Lock()

    async def service(self) -> Service:
        async with self._lock:
            if self._service is None:
                runtime = await to_thread.run_sync(self._runtime)
                self._service = Service.open(runtime, {})
            return self._service

    def _runtime(self) -> Runtime:
        url = self.url or os.environ.get(c.ENV_REDIS_URL)
        if url:
            return Runtime(url)
        from ..runtime import embedded

        home = embedded.home()
        return Runtime(embedded.ensure_server(home), secret=embedded.secret(home), cluster=False)

    async def close(self) -> None:
        if self._service is not None:
            await self._service.close()
            self._service.runtime.close()
            self._service = None


class NbflowHandler(APIHandler):
    """JSON in, JSON out; errors in the REST API's shape ``{"error": {"type", "message"}}``.

    Reading runs is the ``read`` action on the ``nbflow`` resource, cancelling one ``write``,
    for servers whose authorizer tells users apart.
    """

    auth_resource = "nbflow"

    @property
    def backend(self) -> Backend:
        backend: Backend = self.settings["nbflow_backend"]
        return backend

    def write_api_error(self, error: ApiError) -> None:
        self.set_status(error.status)
        body = {"error": {"type": error.type, "message": error.message, **error.extra}}
        self.finish(json.dumps(body))

    def write_json(self, body: Any) -> None:
        self.finish(json.dumps(body, default=str))


class RunsHandler(NbflowHandler):
    """``GET /runs`` of the REST API: the same filters, limit and cursor."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        given = {name: self.get_query_argument(name, "") for name in RunFilter.model_fields}
        try:
            wanted = RunFilter.model_validate({k: v for k, v in given.items() if v != ""})
        except ValidationError as problem:
            self.write_api_error(invalid_input(field_errors(problem.errors(), prefix=("query",))))
            return
        svc = await self.backend.service()
        page = await svc.run_page(wanted)
        runs = [listed(meta) for meta in page.runs]
        self.write_json({"runs": runs, "next_cursor": page.next_cursor})


def listed(meta: dict[str, Any]) -> dict[str, Any]:
    """A run as the REST API lists it, plus where it was started from."""
    row = views.summary(meta).model_dump(mode="json")
    row["notebook"] = meta.get("notebook")
    row["via"] = meta.get("via")
    return row


class RunHandler(NbflowHandler):
    @web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        svc = await self.backend.service()
        try:
            detail = await svc.detail(run_id)
        except ApiError as error:
            self.write_api_error(error)
            return
        self.write_json(detail.model_dump(mode="json"))


class CancelHandler(NbflowHandler):
    @web.authenticated
    @authorized
    async def post(self, run_id: str) -> None:
        svc = await self.backend.service()
        try:
            await svc.exists(run_id)
            outcome = await to_thread.run_sync(Run(svc.runtime, check_id(run_id)).cancel)
            status = await svc.status(run_id)
        except ApiError as error:
            self.write_api_error(error)
            return
        self.write_json({"run_id": run_id, "outcome": outcome, "status": status})


class InputHandler(NbflowHandler):
    """Answer a run's wait for input, as ``POST /runs/{id}/input/{name}`` of the REST API."""

    @web.authenticated
    @authorized
    async def post(self, run_id: str, name: str) -> None:
        svc = await self.backend.service()
        try:
            body = InputBody.model_validate_json(self.request.body or b"{}")
            accepted = await svc.send_input(run_id, name, body.value)
        except ValidationError as problem:
            self.write_api_error(invalid_input(field_errors(problem.errors())))
            return
        except ApiError as error:
            self.write_api_error(error)
            return
        self.set_status(202)
        self.write_json(accepted.model_dump(mode="json"))


class OutputHandler(NbflowHandler):
    """``POST runs/{id}/outputs/{view}``: the renderer draws this notebook output from here,
    so the kernel that displayed it stops following the run (it watches for its end only)."""

    @web.authenticated
    @authorized
    async def post(self, run_id: str, view: str) -> None:
        svc = await self.backend.service()
        try:
            if not (view.isascii() and view.isalnum()) or len(view) > 64:
                raise ApiError(400, "bad_request", "an output's view key is short hex")
            await svc.exists(run_id)
        except ApiError as error:
            self.write_api_error(error)
            return
        key = c.OUTPUT_DRAWN.format(view=view)
        await svc.redis.set(key, run_id, ex=c.OUTPUT_DRAWN_TTL_S)
        self.write_json({"run_id": run_id, "view": view})


class BundleHandler(NbflowHandler):
    """``{"data": bundle}``: the MIME bundle a kernel would show for the run now."""

    @web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        svc = await self.backend.service()
        try:
            await svc.exists(run_id)
        except ApiError as error:
            self.write_api_error(error)
            return
        run = Run(svc.runtime, check_id(run_id))
        data, _state = await to_thread.run_sync(run_bundle, run)
        self.write_json({"data": data})


class PageHandler(JupyterHandler):
    """The viewer page (runs list, a run's trace at ``#run=ID``) and its two assets."""

    auth_resource = "nbflow"

    @web.authenticated
    @authorized
    def get(self, name: str = "") -> None:
        where = ui.assets_dir()
        if where is None:
            raise web.HTTPError(503, ui.MISSING)
        if not name:
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.finish(ui.PAGE)
            return
        if name not in ui.ASSETS:
            raise web.HTTPError(404)
        self.set_header("Content-Type", ui.ASSETS[name])
        self.set_header("Cache-Control", "no-cache")
        self.finish((where / name).read_bytes())


class EventsHandler(NbflowHandler):
    """Server-Sent Events: ``id:`` is the stream id; resumes after Last-Event-ID or ?after=."""

    _track_activity = False  # an open stream is not a user doing something
    closed = False

    def on_connection_close(self) -> None:
        self.closed = True

    @web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        after = self.request.headers.get("Last-Event-ID") or self.get_query_argument("after", "0")
        svc = await self.backend.service()
        try:
            parse_id(after)
            await svc.exists(run_id)
        except ValueError as problem:
            self.write_api_error(ApiError(400, "bad_event_id", str(problem)))
            return
        except ApiError as error:
            self.write_api_error(error)
            return
        for name, value in {**HEADERS, "Content-Type": SSE}.items():
            self.set_header(name, value)
        try:
            await self._stream(svc, run_id, after)
        except StreamClosedError:
            return
        if not self.closed:
            self.finish(set_content_type=SSE)

    async def _stream(self, svc: Service, run_id: str, after: str) -> None:
        quiet_s = 0.0
        batches = svc.hub.follow(run_id, after, idle_s=POLL_CLOSED_S)
        async with contextlib.aclosing(batches):
            await self.flush()
            async for batch in batches:
                if self.closed:
                    return
                quiet_s = quiet_s + POLL_CLOSED_S if not batch else 0.0
                if batch:
                    self.write("".join(sse_frame(item) for item in batch))
                elif quiet_s >= KEEP_ALIVE_S:
                    self.write(SSE_KEEP_ALIVE)
                    quiet_s = 0.0
                else:
                    continue
                await self.flush()


def routes() -> list[tuple[str, type[JupyterHandler]]]:
    """Route patterns under the server's base URL (the extension app prepends it)."""
    run = r"runs/(?P<run_id>[^/]+)"
    paths = {
        "runs": RunsHandler,
        run: RunHandler,
        f"{run}/events": EventsHandler,
        f"{run}/cancel": CancelHandler,
        f"{run}/input/(?P<name>[^/]+)": InputHandler,
        f"{run}/outputs/(?P<view>[^/]+)": OutputHandler,
        f"{run}/bundle": BundleHandler,
    }
    pages: list[tuple[str, type[JupyterHandler]]] = [
        (f"/{BASE}/ui", PageHandler),
        (f"/{BASE}/ui/(?P<name>[^/]+)", PageHandler),
    ]
    return [(f"/{BASE}/{path}", handler) for path, handler in paths.items()] + pages
