"""/docs and /ui in Debian's Chromium, offline and behind a token: every request the pages
make goes to the API itself (anything else is blocked and counted), and both render."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from nbflow.api import create_app
from nbflow.runtime.client import Runtime

from ..conftest import ThreadServer

TOKEN = "offline-token"


@pytest.fixture
def guarded_url(runtime: Runtime) -> Iterator[str]:
    served = ThreadServer(create_app(runtime, token=TOKEN))
    yield served.url
    served.stop()


@pytest.fixture
def offline(page: Any, guarded_url: str) -> list[str]:
    """Requests for anything but the API, blocked as they would fail with no network."""
    elsewhere: list[str] = []

    def route(request_route: Any) -> None:
        url = request_route.request.url
        if url.startswith(guarded_url):
            request_route.continue_()
        else:
            elsewhere.append(url)
            request_route.abort()

    page.route("**/*", route)
    return elsewhere


def test_docs_render_offline_after_the_token_is_given_once(
    page: Any, guarded_url: str, offline: list[str]
) -> None:
    page.goto(f"{guarded_url}/docs?token={TOKEN}")
    assert page.url == f"{guarded_url}/docs"  # the token is gone from the address
    page.wait_for_selector(".swagger-ui .information-container .title", timeout=20_000)
    assert "nbflow" in page.inner_text(".swagger-ui .information-container .title")
    page.wait_for_selector(".opblock-summary-path[data-path='/runs/{run_id}/events']")
    assert offline == []


def test_ui_lists_runs_after_the_token_is_given_once(
    page: Any, runtime: Runtime, guarded_url: str, offline: list[str]
) -> None:
    run = runtime.start("nowhere", {})  # no worker serves it: it stays queued, and listed
    page.goto(f"{guarded_url}/ui?token={TOKEN}")
    page.wait_for_selector(f'.nbflow-run-row[data-run="{run.id}"]', timeout=20_000)
    assert "token" not in page.url.split("#")[0]
    assert page.evaluate("localStorage.getItem('nbflow-api-token')") == TOKEN
    assert offline == []
