"""``/ui``: the run viewer of the JupyterLab extension, as a page of its own on the REST API.

The page is the extension's rendering code bundled on its own (built with the
extension, into ``labextension/ui/``); it reads the API's ``/runs`` routes.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from .._assets import viewer_dir
from .errors import error_response

ASSETS = {"viewer.js": "text/javascript", "viewer.css": "text/css"}
PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>nbflow runs</title>
<link rel="stylesheet" href="ui/viewer.css">
<style>
  html, body { margin: 0; height: 100%; }
  #nbflow-ui { display: grid; grid-template-columns: minmax(280px, 1fr) 3fr; height: 100%; }
  .nbflow-ui-list { border-right: 1px solid #ddd; overflow: hidden; }
  .nbflow-ui-detail { min-width: 0; height: 100%; overflow: hidden; }
</style>
</head>
<body>
<div id="nbflow-ui"></div>
<script src="ui/viewer.js"></script>
</body>
</html>
"""
MISSING = (
    "The nbflow viewer is not installed. It is built with nbflow's JupyterLab extension, "
    "which needs Node.js and npm where nbflow is installed, or comes prebuilt in a wheel "
    "(see the README's Install); in a source tree, run `npm run build` in extension/."
)


def assets_dir() -> Path | None:
    """Where the bundle is: beside the package (a source tree), or where pip put the extension."""
    return viewer_dir("viewer.js")


def install(app: FastAPI) -> None:
    """Serve the viewer at ``/ui``; the page itself is public, its API calls carry the token."""
    app.add_api_route("/ui", page, methods=["GET"], include_in_schema=False)
    app.add_api_route("/ui/", slash, methods=["GET"], include_in_schema=False)
    app.add_api_route("/ui/{name}", asset, methods=["GET"], include_in_schema=False)


async def page() -> Response:
    if assets_dir() is None:
        return HTMLResponse(MISSING, status_code=503)
    return HTMLResponse(PAGE)


async def slash() -> Response:
    return RedirectResponse("../ui")


async def asset(name: str) -> Response:
    where = assets_dir()
    if name not in ASSETS or where is None:
        return error_response(404, "not_found", f"no asset {name!r}")
    return FileResponse(
        where / name, media_type=ASSETS[name], headers={"Cache-Control": "no-cache"}
    )
