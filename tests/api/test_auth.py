"""Bearer-token auth, the OpenAPI description, and where ``nbflow api`` agrees to listen."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import httpx
import pytest

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
]


def _call(
    client: httpx.Client, method: str, path: str, run_id: str, **options: object
) -> httpx.Response:
    body = {"input": {"name": "x"}} if method == "POST" and "workflows" in path else None
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


def test_docs_describe_every_route_and_stay_open(serve: Callable[..., str]) -> None:
    with httpx.Client(base_url=serve(token="s3cret"), timeout=10) as client:
        docs = client.get("/docs")
        assert docs.status_code == 200 and "swagger" in docs.text.lower()
        spec = client.get("/openapi.json").json()
    described = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    expected = {(m, p.replace("greet", "{name}")) for m, p in ROUTES}
    assert described == expected
    for path, ops in spec["paths"].items():
        for op in ops.values():
            assert op["summary"], path
            assert op["security"] == [{"HTTPBearer": []}]
            assert "401" in op["responses"]
    streams = spec["paths"]["/runs/{run_id}/events"]["get"]["responses"]["200"]["content"]
    assert {"text/event-stream", "application/x-ndjson"} <= set(streams)
    sync = spec["paths"]["/workflows/{name}"]["post"]["responses"]
    assert {"application/json", "text/event-stream", "application/x-ndjson"} <= set(
        sync["200"]["content"]
    )
    assert {"202", "404", "413", "422"} <= set(sync)


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
