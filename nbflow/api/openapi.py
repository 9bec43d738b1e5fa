"""The OpenAPI document, completed with every status a route can answer.

FastAPI describes what each route declares. What this server adds around the
routes (auth, the loopback guard, body rules, the runtime being down, the
stream limit) is added here to every operation it applies to, and every error
is described as the one shape all errors share. A test fuzzes the served
document against the server (tests/api/test_openapi.py): anything the server
answers that the document does not list fails it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from .auth import OPEN_PATHS, SCHEME

ERROR = {"$ref": "#/components/schemas/ErrorBody"}
COMMON = {
    422: "invalid input; `error.fields` names each bad field",
    503: "the runtime (Redis) cannot be reached",
}
WITH_BODY = {
    413: "request body over the limit",
    415: "a request body that is not sent as `application/json`",
}
WITH_TOKEN = {401: "missing or wrong bearer token"}
WITHOUT_TOKEN = {
    403: "without a token: a Host that is not a loopback name, or an Origin not the server's own"
}
FOLLOWING = {503: "the runtime cannot be reached, or too many streams are open (Retry-After)"}
# Operations that follow a run for as long as it goes on: they count against max_streams.
FOLLOWERS = {("post", "/workflows/{name}"), ("get", "/runs/{run_id}/events")}


def install(app: FastAPI, *, token: bool) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = complete(doc, token=token)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete(doc: dict[str, Any], *, token: bool) -> dict[str, Any]:
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            _statuses(operation, path, method, token=token)
            for parameter in operation.get("parameters", []):
                parameter["schema"] = _not_null(parameter["schema"])
            if token:
                operation["security"] = [] if path in OPEN_PATHS else [{SCHEME: []}]
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    if token:
        doc["components"]["securitySchemes"] = {
            SCHEME: {
                "type": "http",
                "scheme": "bearer",
                "description": "NBFLOW_API_TOKEN of the server",
            }
        }
    return doc


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional parameter's schema without its ``null``: a parameter left out is not
    given, and a header or query value cannot be null (``null`` would be the text)."""
    options = schema.get("anyOf", [])
    given = [option for option in options if option != {"type": "null"}]
    if len(given) != 1 or len(given) == len(options):
        return schema
    rest = {k: v for k, v in schema.items() if k != "anyOf"}
    return {**given[0], **rest}


def _statuses(operation: dict[str, Any], path: str, method: str, *, token: bool) -> None:
    added: dict[int, str] = dict(WITHOUT_TOKEN) if not token else {}
    if path not in OPEN_PATHS:
        added |= COMMON | (WITH_TOKEN if token else {})
    if "requestBody" in operation or method == "post":
        added |= WITH_BODY
    if (method, path) in FOLLOWERS:
        added |= FOLLOWING
    responses = operation.setdefault("responses", {})
    for status, description in added.items():
        responses.setdefault(str(status), {"description": description})
    for status, response in responses.items():
        if int(status) >= 400:  # every error is JSON, whatever the route's own media type
            response["content"] = {"application/json": {"schema": ERROR}}
