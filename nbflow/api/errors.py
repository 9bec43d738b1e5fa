"""Every error the API answers is JSON ``{"error": {"type", "message"}}``.

Handlers here turn FastAPI's own errors (unknown route, bad body) and ours into
that one shape, so clients parse one thing whatever went wrong. Messages do not
show this machine's file-system paths (a Redis socket, a module's file): each
is cut to its last part, unless the app was made with ``show_paths=True``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ..errors import RunNotFound, RuntimeUnavailable

log = logging.getLogger("nbflow.api")

HTTP_TYPES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
}
# An absolute path of two parts or more, not inside a URL's authority or a word
# (redis://host:6379/0 keeps its /0); a unix:// URL's path is a file's path.
_PATH = re.compile(r"(?:(?<=unix://)|(?<![\w:/.~-]))/[^/\s'\"(),;]+(?:/[^/\s'\"(),;]+)+")


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.headers = headers
        self.extra = extra


def error_response(
    status: int, type_: str, message: str, *, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = {"error": {"type": type_, "message": message, **extra}}
    return JSONResponse(body, status_code=status, headers=headers)


def field_errors(
    errors: Sequence[Any], *, prefix: tuple[str | int, ...] = ()
) -> list[dict[str, str]]:
    """Pydantic errors as ``{"field": "input.topic", "message": ...}``, one per problem."""
    fields = []
    for error in errors:
        loc = (*prefix, *error.get("loc", ()))
        fields.append(
            {
                "field": ".".join(str(part) for part in loc) or "body",
                "message": error.get("msg", ""),
            }
        )
    return fields


def invalid_input(fields: list[dict[str, str]]) -> ApiError:
    message = "; ".join(f"{f['field']}: {f['message']}" for f in fields) or "invalid input"
    return ApiError(422, "invalid_input", message, fields=fields)


def without_paths(message: str) -> str:
    """``message`` with each absolute path cut to its last part: ``…/valkey.sock``."""
    return _PATH.sub(lambda m: "…/" + m[0].rsplit("/", 1)[1], message)


def _public(request: Request, message: str) -> str:
    return message if request.app.state.show_paths else without_paths(message)


async def _api_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ApiError)
    return error_response(
        error.status,
        error.type,
        _public(request, error.message),
        headers=error.headers,
        **error.extra,
    )


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    return error_response(
        error.status_code,
        HTTP_TYPES.get(error.status_code, "http_error"),
        _public(request, str(error.detail)),
        headers=error.headers,
    )


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    fields = field_errors([_without_request_part(e) for e in error.errors()])
    return await _api_error(request, invalid_input(fields))


def _without_request_part(error: Any) -> Any:
    # FastAPI prefixes locations with "body"/"query"/"header"; the field path reads better without.
    loc = tuple(error.get("loc", ()))
    if error.get("type") == "json_invalid":  # its location is a character offset
        problem = (error.get("ctx") or {}).get("error") or "JSON decode error"
        at = f" at character {loc[1]}" if len(loc) > 1 else ""
        return {**error, "loc": (), "msg": f"not valid JSON: {problem}{at}"}
    if loc[:1] == ("body",):
        loc = loc[1:]
    return {**error, "loc": loc}


async def _run_not_found(request: Request, error: Exception) -> JSONResponse:
    return error_response(404, "run_not_found", _public(request, str(error)))


async def _unavailable(request: Request, error: Exception) -> JSONResponse:
    log.warning("%s %s: runtime unavailable: %s", request.method, request.url.path, error)
    message = _public(request, f"the runtime cannot be reached: {error}")
    return error_response(503, "runtime_unavailable", message)


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    # Starlette re-raises after this response is sent, so the server logs the traceback.
    return error_response(
        500, "internal_error", "internal error (the API server's log has the traceback)"
    )


def install(app: FastAPI, *, show_paths: bool = False) -> None:
    app.state.show_paths = show_paths
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(RunNotFound, _run_not_found)
    app.add_exception_handler(RuntimeUnavailable, _unavailable)
    app.add_exception_handler(redis.RedisError, _unavailable)
    app.add_exception_handler(Exception, _unexpected)
