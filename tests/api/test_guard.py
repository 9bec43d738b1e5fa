"""What a web page could send is refused: foreign Hosts and Origins without a token, and
bodies that are not JSON (with finite numbers) always. Over a real socket; runs are counted."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
import redis

from nbflow import constants as c

EVIL = "http://evil.example"
START = "/workflows/greet/start"
BODY = b'{"input": {"name": "x"}}'


def _runs(r: redis.Redis) -> int:
    return int(r.zcard(c.RUNS_INDEX))


@pytest.fixture
def client(serve: Callable[..., str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=serve(), timeout=10) as http:
        yield http


def _refused(reply: httpx.Response, status: int, type_: str) -> str:
    assert reply.status_code == status, reply.text
    assert reply.json()["error"]["type"] == type_
    message: str = reply.json()["error"]["message"]
    return message


def test_a_cross_site_form_post_starts_no_run(client: httpx.Client, r: redis.Redis) -> None:
    # The reproduction: another site's page posts to the loopback API, no content type.
    reply = client.post(START, content=BODY, headers={"Origin": EVIL})
    assert "evil.example" in _refused(reply, 403, "cross_origin")
    no_type = client.post(START, content=BODY)  # even from this machine: not JSON, no run
    _refused(no_type, 415, "unsupported_media_type")
    as_form = client.post(START, content=BODY, headers={"Content-Type": "text/plain"})
    _refused(as_form, 415, "unsupported_media_type")
    assert _runs(r) == 0


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_cross_origin_request_is_refused_whatever_its_method(
    client: httpx.Client, r: redis.Redis, method: str
) -> None:
    reply = client.request(
        method, START if method == "POST" else "/runs", json={}, headers={"Origin": EVIL}
    )
    _refused(reply, 403, "cross_origin")
    assert _runs(r) == 0


def test_the_servers_own_origin_is_served(client: httpx.Client, r: redis.Redis) -> None:
    own = str(client.base_url).rstrip("/")  # http://127.0.0.1:<port>, as its own pages send
    assert (
        client.post(
            START, content=BODY, headers={"Origin": own, "Content-Type": "application/json"}
        ).status_code
        == 202
    )
    other_port = own.rsplit(":", 1)[0] + ":1"
    localhost = own.replace("127.0.0.1", "localhost")  # another origin, though loopback
    for origin in (other_port, localhost, "null", "file://"):
        _refused(client.post(START, json={}, headers={"Origin": origin}), 403, "cross_origin")
    assert _runs(r) == 1


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8765", "127.0.0.1.evil.example", "10.0.0.1", "[::2]"]
)
def test_a_host_that_is_not_loopback_is_refused(
    client: httpx.Client, r: redis.Redis, host: str
) -> None:
    # DNS rebinding: the attacker's name resolves to 127.0.0.1, and the browser sends it.
    reply = client.post(
        START, content=BODY, headers={"Host": host, "Content-Type": "application/json"}
    )
    assert host in _refused(reply, 403, "host_not_allowed")
    _refused(client.get("/healthz", headers={"Host": host}), 403, "host_not_allowed")
    assert _runs(r) == 0


@pytest.mark.parametrize(
    "host", ["localhost", "LOCALHOST:80", "127.0.0.1", "127.9.9.9:1", "[::1]:8765"]
)
def test_loopback_hosts_with_any_port_are_served(client: httpx.Client, host: str) -> None:
    assert client.get("/runs", headers={"Host": host}).status_code == 200


def test_with_a_token_other_hosts_and_origins_are_served_but_bodies_must_be_json(
    serve: Callable[..., str], r: redis.Redis
) -> None:
    auth = {"Authorization": "Bearer t0k"}
    with httpx.Client(base_url=serve(token="t0k"), timeout=10, headers=auth) as client:
        anywhere = {"Host": "api.example.com", "Origin": EVIL}
        assert client.get("/runs", headers=anywhere).status_code == 200
        reply = client.post(START, content=BODY, headers={**anywhere, "Content-Type": "text/plain"})
        _refused(reply, 415, "unsupported_media_type")
        assert _runs(r) == 0
        assert (
            client.post(
                START, content=BODY, headers={**anywhere, "Content-Type": "application/json"}
            ).status_code
            == 202
        )
        _refused(
            client.post(START, json={}, headers={"Authorization": "Bearer no"}), 401, "unauthorized"
        )
        assert _runs(r) == 1


@pytest.mark.parametrize(
    ("content_type", "accepted"),
    [("application/json", True), ("application/json; charset=utf-8", True),
     ("application/merge-patch+json", True), ("APPLICATION/JSON", True),
     ("text/plain", False), ("application/x-www-form-urlencoded", False),
     ("multipart/form-data; boundary=x", False), ("application/jsonx", False)],
)  # fmt: skip
def test_a_body_must_say_it_is_json(
    client: httpx.Client, r: redis.Redis, content_type: str, accepted: bool
) -> None:
    reply = client.post(START, content=BODY, headers={"Content-Type": content_type})
    assert reply.status_code == (202 if accepted else 415), reply.text
    assert _runs(r) == int(accepted)


def test_a_post_without_a_body_needs_no_content_type(client: httpx.Client, r: redis.Redis) -> None:
    assert client.post("/workflows/opaque/start").status_code == 202
    assert _runs(r) == 1


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"input": {"n": NaN, "ratio": 1, "tags": []}}', "input.n"),
        (b'{"input": {"n": 1, "ratio": Infinity, "tags": []}}', "input.ratio"),
        (b'{"input": {"n": 1, "ratio": -Infinity, "tags": []}}', "input.ratio"),
        (b'{"input": {"n": 1, "ratio": 1e400, "tags": []}}', "input.ratio"),
        (b'{"input": {"n": 1, "ratio": 1, "tags": [1, [2, -1e999]]}}', "input.tags.1.1"),
    ],
)
def test_numbers_json_cannot_hold_are_refused_naming_the_field(
    client: httpx.Client, r: redis.Redis, raw: bytes, field: str
) -> None:
    reply = client.post(
        "/workflows/typed/start", content=raw, headers={"Content-Type": "application/json"}
    )
    _refused(reply, 422, "invalid_input")
    assert [f["field"] for f in reply.json()["error"]["fields"]] == [field]
    assert _runs(r) == 0


@pytest.mark.parametrize("given", ['"2"', "true", "2.0"])
def test_an_int_input_takes_only_a_json_integer(
    client: httpx.Client, r: redis.Redis, given: str
) -> None:
    raw = f'{{"input": {{"n": {given}, "ratio": 1, "tags": []}}}}'.encode()
    reply = client.post(
        "/workflows/typed/start", content=raw, headers={"Content-Type": "application/json"}
    )
    _refused(reply, 422, "invalid_input")
    assert [f["field"] for f in reply.json()["error"]["fields"]] == ["input.n"]
    assert _runs(r) == 0


@pytest.mark.parametrize("raw", [b'{"input": "\xff"}', b"\xef\xbb\xbf{}", b"{nope"])
def test_undecodable_and_malformed_bodies_are_both_422(
    client: httpx.Client, r: redis.Redis, raw: bytes
) -> None:
    reply = client.post(START, content=raw, headers={"Content-Type": "application/json"})
    assert "not valid JSON" in _refused(reply, 422, "invalid_input")
    assert reply.json()["error"]["fields"][0]["field"] == "body"
    assert _runs(r) == 0


@pytest.mark.parametrize("body", [{"input": None}, {}, None])
def test_no_input_may_be_said_as_null_or_left_out(
    client: httpx.Client, r: redis.Redis, body: object
) -> None:
    reply = client.post("/workflows/opaque/start", json=body)
    assert reply.status_code == 202, reply.text
    assert _runs(r) == 1
