"""``/docs``: Swagger UI from files installed with nbflow, so that it works offline.

The page, its script and its stylesheet are served by this process from the
``swagger-ui-bundle-v2`` package (Swagger UI 5, which reads the OpenAPI 3.1
document that FastAPI writes); nothing is loaded from another site.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, Response

from .errors import error_response

ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}
# No "validator" badge: it would send the document to an outside service.
PARAMETERS = {"validatorUrl": None, "persistAuthorization": True}


def assets_dir() -> Path:
    from swagger_ui_bundle import swagger_ui_path

    return Path(str(swagger_ui_path))


def install(app: FastAPI) -> None:
    app.add_api_route("/docs", page, methods=["GET"], include_in_schema=False)
    app.add_api_route("/docs/{name}", asset, methods=["GET"], include_in_schema=False)


async def page(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return get_swagger_ui_html(
        openapi_url=f"{root}/openapi.json",
        title="nbflow API",
        swagger_js_url=f"{root}/docs/swagger-ui-bundle.js",
        swagger_css_url=f"{root}/docs/swagger-ui.css",
        swagger_favicon_url=f"{root}/docs/favicon-32x32.png",
        oauth2_redirect_url=None,
        swagger_ui_parameters=PARAMETERS,
    )


async def asset(name: str) -> Response:
    if name not in ASSETS:
        return error_response(404, "not_found", f"no asset {name!r}")
    return FileResponse(assets_dir() / name, media_type=ASSETS[name])
