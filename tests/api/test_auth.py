"""Bearer-token auth, the OpenAPI description, and where ``nbflow api`` agrees to listen."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from nbflow.api.server import refusal

from .helpers import ROOT

ROUTES = [
    ("GET", "/workflows"),
    ("POST", "/workflows/greet"),
    ("POST", "/workflows/greet/start"),
    ("GET", "/runs"),
    ("GET", "/runs/{run_id}"),
    ("POST", "/runs/{run_id}/cancel"),
    ("GET", "/runs/{run_id}/events"),
    ("POST", "/runs/{run_id}/input/{name}"),
    ("GET", "/runs/{run_id}/state/{name}"),
]


def _call(
    client: httpx.Client, method: str, path: str, run_id: str, **options: object
) -> httpx.Response:
    body: dict[str, Any] | None = (
        {"input": {"name": "x"}} if method == "POST" and "workflows" in path else None
    )
    if path.endswith("/input/{name}"):
        body = {"value": True}
    url = path.format(run_id=run_id, name="approve")
    return client.request(method, url, json=body, **options)  # type: ignore[arg-type]


def test_with_a_token_every_route_needs_it(serve: Callable[..., str]) -> None:
    with httpx.Client(base_url=serve(token="s3cret"), timeout=10) as client:
        good = {"Authorization": "Bearer s3cret"}
        started = client.post("/workflows/greet/start", json={"input": {"name": "x"}}, headers=good)
        run_id = started.json()["run_id"]
        for method, path in ROUTES:
            for headers in (
                {},
                {"Authorization": "Bearer nope"},
                {"Authorization": "Basic s3cret"},
            ):
                reply = _call(client, method, path, run_id, headers=headers)
                assert reply.status_code == 401, (method, path, headers)
                assert reply.json()["error"]["type"] == "unauthorized"
                assert reply.headers["www-authenticate"] == "Bearer"
        client.post(f"/runs/{run_id}/cancel", headers=good)  # so that the events route ends at once
        for method, path in ROUTES:
            if path == "/workflows/greet":
                continue  # waits for a worker; the 401s above are what it shares
            # The run does not wait for input: 409 is the route's own answer, past the token.
            allowed = (409,) if path.endswith("/input/{name}") else (200, 202)
            assert _call(client, method, path, run_id, headers=good).status_code in allowed


def test_the_token_can_come_from_the_environment(
    serve: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBFLOW_API_TOKEN", "from-env")
    with httpx.Client(base_url=serve(), timeout=10) as client:
        assert client.get("/runs").status_code == 401
        assert client.get("/runs", headers={"Authorization": "Bearer from-env"}).status_code == 200


def test_without_a_token_no_header_is_needed(serve: Callable[..., str]) -> None:
    with httpx.Client(base_url=serve(token=""), timeout=10) as client:
        assert client.get("/runs").status_code == 200
        assert client.get("/workflows").status_code == 200


def _concrete(path: str, run_id: str) -> str:
    """A route's path with each parameter filled in with something it serves."""
    fills = {"{run_id}": run_id, "{name}": "greet"}
    if path.startswith(("/ui/", "/docs/")):
        fills["{name}"] = "viewer.js" if path.startswith("/ui/") else "swagger-ui.css"
    for param, value in fills.items():
        path = path.replace(param, value)
    return path


def _leaves(routes: Sequence[Any], prefix: str = "") -> Iterator[tuple[str, set[str]]]:
    """Every route of an app as (path, methods), through included routers and mounts."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _leaves(inner.routes, prefix + route.include_context.prefix)
        elif getattr(route, "routes", None):
            yield from _leaves(route.routes, prefix + route.path)
        else:
            yield prefix + route.path, set(getattr(route, "methods", None) or {"GET"})


def test_every_route_of_the_app_but_healthz_needs_the_token(
    serve: Callable[..., str], served_apps: dict[str, FastAPI]
) -> None:
    base_url = serve(token="s3cret")
    routes = list(_leaves(served_apps[base_url].routes))
    assert len(routes) >= 14  # the API's, /docs, /openapi.json and /ui: all of them, below
    with httpx.Client(base_url=base_url, timeout=10) as client:
        started = client.post(
            "/workflows/greet/start",
            json={"input": {"name": "x"}},
            headers={"Authorization": "Bearer s3cret"},
        )
        run_id = started.json()["run_id"]
        for path, methods in routes:
            for method in sorted(methods):
                reply = client.request(method, _concrete(path, run_id))
                if path == "/healthz":
                    assert reply.status_code == 200 and reply.json() == {"status": "ok"}
                    continue
                assert reply.status_code == 401, (method, path, reply.text)
                assert method == "HEAD" or reply.json()["error"]["type"] == "unauthorized"


def test_pages_take_the_token_once_and_then_a_cookie_that_opens_no_api_route(
    serve: Callable[..., str],
) -> None:
    base_url = serve(token="s3cret")
    with httpx.Client(base_url=base_url, timeout=10) as browser:
        assert browser.get("/docs", params={"token": "wrong"}).status_code == 401
        welcome = browser.get("/docs", params={"token": "s3cret"})
        assert welcome.status_code == 303 and welcome.headers["location"] == "/docs"
        cookie = welcome.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "s3cret" not in cookie
        docs = browser.get("/docs")
        assert docs.status_code == 200 and "swagger-ui-bundle.js" in docs.text
        assert browser.get("/openapi.json").json()["info"]["title"] == "nbflow"
        assert browser.get("/docs/swagger-ui.css").status_code == 200
        for method, path in ROUTES:  # the cookie stands for the token on pages only
            reply = browser.request(method, path.format(run_id="0123456789abcdef", name="ok"))
            assert reply.status_code == 401, (method, path)
        to_ui = browser.get("/ui", params={"token": "s3cret", "x": "1"})
        assert to_ui.headers["location"] == "/ui?x=1#token=s3cret"  # for the viewer's API calls


def test_the_document_says_which_routes_need_the_token(serve: Callable[..., str]) -> None:
    with httpx.Client(base_url=serve(token="s3cret"), timeout=10) as client:
        spec = client.get("/openapi.json", headers={"Authorization": "Bearer s3cret"}).json()
    described = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    expected = {(m, p.replace("greet", "{name}")) for m, p in ROUTES} | {("GET", "/healthz")}
    assert described == expected
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for path, ops in spec["paths"].items():
        for op in ops.values():
            assert op["summary"], path
            needs = path != "/healthz"
            assert op["security"] == ([{"HTTPBearer": []}] if needs else [])
            assert ("401" in op["responses"]) == needs
            assert "403" not in op["responses"]  # the loopback guard is off with a token
    streams = spec["paths"]["/runs/{run_id}/events"]["get"]["responses"]["200"]["content"]
    assert {"text/event-stream", "application/x-ndjson"} == set(streams)
    sync = spec["paths"]["/workflows/{name}"]["post"]["responses"]
    assert {"application/json", "text/event-stream", "application/x-ndjson"} <= set(
        sync["200"]["content"]
    )
    assert {"202", "401", "404", "413", "415", "422", "503"} <= set(sync)


@pytest.mark.parametrize(
    ("host", "token", "refused"),
    [
        ("127.0.0.1", None, False),
        ("localhost", None, False),
        ("::1", None, False),
        ("0.0.0.0", None, True),
        ("192.0.2.7", None, True),
        ("0.0.0.0", "t", False),
    ],
)
def test_only_loopback_is_served_without_a_token(
    host: str, token: str | None, refused: bool
) -> None:
    assert (refusal(host, token) is not None) == refused


def test_cli_refuses_a_public_address_without_a_token() -> None:
    env = {k: v for k, v in os.environ.items() if k != "NBFLOW_API_TOKEN"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "nbflow.cli",
            "api",
            "--host",
            "0.0.0.0",
            "--redis",
            "redis://127.0.0.1:1",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "NBFLOW_API_TOKEN" in done.stderr
