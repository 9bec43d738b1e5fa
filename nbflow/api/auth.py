"""Bearer-token auth: with a token configured, every route needs ``Authorization: Bearer <token>``.

``/docs`` and ``/openapi.json`` stay open: they describe the same generic routes
on every nbflow server (workflow names and schemas are served only by
``GET /workflows``, which is protected), and a browser loading ``/docs`` cannot
send a bearer token for the schema itself; its "Authorize" button then sends
the token with every call made from the page.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, params
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .errors import ApiError
from .models import ErrorBody

RESPONSES: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorBody, "description": "missing or wrong bearer token"}
}
_bearer = HTTPBearer(auto_error=False, description="NBFLOW_API_TOKEN of the server")


def require(token: str) -> params.Depends:
    """A dependency that refuses any request without ``token``."""
    expected = token.encode()

    async def check(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        given = credentials.credentials.encode() if credentials is not None else b""
        if not hmac.compare_digest(given, expected):
            raise ApiError(
                401,
                "unauthorized",
                "missing or wrong bearer token (Authorization: Bearer <token>)",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return params.Depends(check)
