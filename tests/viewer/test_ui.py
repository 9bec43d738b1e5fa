"""``nbflow api`` serves the viewer at /ui: a page that takes the token once (?token=)."""

from __future__ import annotations

import anyio
import httpx
import pytest

from nbflow.api import create_app, ui
from nbflow.runtime.client import Runtime

from .support import LABEXTENSION


@pytest.fixture
def client(runtime: Runtime) -> httpx.AsyncClient:
    if not (LABEXTENSION / "ui" / "viewer.js").is_file():
        pytest.skip("the viewer is not built (pip install ., or npm run build in extension/)")
    app = create_app(runtime, token="sesame")
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")


def get(client: httpx.AsyncClient, *paths: str) -> list[httpx.Response]:
    async def fetch() -> list[httpx.Response]:
        async with client:
            return [await client.get(path) for path in paths]

    return anyio.run(fetch)


def test_ui_page_needs_the_token_once_then_loads_the_bundle(client: httpx.AsyncClient) -> None:
    refused, welcome, page = get(client, "/ui", "/ui?token=sesame", "/ui")
    assert refused.status_code == 401
    assert welcome.status_code == 303 and welcome.headers["location"] == "/ui#token=sesame"
    assert page.status_code == 200  # the cookie the welcome set
    assert '<script src="ui/viewer.js">' in page.text


@pytest.mark.parametrize(
    ("path", "status", "kind"),
    [
        ("/ui/viewer.js", 200, "text/javascript"),
        ("/ui/viewer.css", 200, "text/css"),
        ("/ui/secrets.txt", 404, None),
        ("/runs", 401, None),  # the data behind the page needs the token as a header
    ],
)
def test_ui_assets_and_auth(
    client: httpx.AsyncClient, path: str, status: int, kind: str | None
) -> None:
    response = get(client, "/ui?token=sesame", path)[-1]
    assert response.status_code == status
    if kind:
        assert response.headers["content-type"].startswith(kind)


def test_ui_says_how_to_build_the_viewer_when_it_is_missing(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ui, "assets_dir", lambda: None)
    response = get(client, "/ui?token=sesame", "/ui")[-1]
    assert response.status_code == 503
    assert "npm run build" in response.text
