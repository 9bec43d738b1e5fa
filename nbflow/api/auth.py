"""Bearer-token auth: with a token configured, every route needs ``Authorization: Bearer <token>``.

``/docs`` and ``/openapi.json`` stay open: they describe the same generic routes
on every nbflow server (workflow names and schemas are served only by
``GET /workflows``, which is protected), and a browser loading ``/docs`` cannot
send a bearer token for the schema itself; its "Authorize" button then sends
the token with every call made from the page.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..constants import ENV_API_TOKEN
from .errors import ApiError

LOOPBACK_NAMES = ("localhost",)
_bearer = HTTPBearer(auto_error=False, description="NBFLOW_API_TOKEN of the server")


def configured_token(token: str | None) -> str | None:
    """``token``, else ``NBFLOW_API_TOKEN``; an empty one means no auth."""
    value = token if token is not None else os.environ.get(ENV_API_TOKEN, "")
    return value or None


def require(token: str) -> object:
    """A dependency that refuses any request without ``token``."""
    expected = token.encode()

    async def check(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
        given = credentials.credentials.encode() if credentials is not None else b""
        if not hmac.compare_digest(given, expected):
            raise ApiError(401, "unauthorized", "missing or wrong bearer token (Authorization: Bearer <token>)",
                           headers={"WWW-Authenticate": "Bearer"})

    return Depends(check)


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
