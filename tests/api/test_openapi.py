"""The OpenAPI document tells the truth: schemathesis, with all its checks, finds nothing.

Each operation is fuzzed over a real socket (examples, coverage and fuzzing
phases; valid and invalid requests), with and without a token. The document
fuzzed is the one the server serves (checked equal); it is built at import
because test cases are made when tests are collected. Half the cases name a
real workflow (one that takes any input) or a finished run, so that the answers
of success are fuzzed too, streams included. Bounded to 25 generated examples
an operation, derandomized: the same cases each run.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.config import SchemathesisConfig

from nbflow.api import create_app

from .helpers import APP

TOKEN = "fuzz-token"
load_all_checks()
ALL_CHECKS = list(CHECKS.get_all())
OPEN = schemathesis.openapi.from_dict(create_app(app_module=APP).openapi())
GUARDED = schemathesis.openapi.from_dict(
    create_app(app_module=APP, token=TOKEN).openapi(),
    config=SchemathesisConfig.from_dict({"auth": {"openapi": {"HTTPBearer": {"bearer": TOKEN}}}}),
)
FUZZ = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def test_every_check_schemathesis_has_is_run() -> None:
    names = {check.__name__ for check in ALL_CHECKS}
    assert {"not_a_server_error", "status_code_conformance", "content_type_conformance",
            "response_schema_conformance", "negative_data_rejection", "positive_data_acceptance",
            "unsupported_method", "ignored_auth", "missing_required_header"} <= names  # fmt: skip


def _serve(
    serve: Callable[..., str], token: str | None, expected: schemathesis.BaseSchema
) -> tuple[str, str]:
    """Serve the API (with ``token``): its URL, and the id of a run it finished."""
    url = serve(token=token)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    assert httpx.get(f"{url}/openapi.json", headers=headers).json() == expected.raw_schema
    reply = httpx.post(f"{url}/workflows/opaque", json={}, headers=headers, timeout=20)
    assert reply.json()["status"] == "succeeded"
    return url, reply.json()["run_id"]


@pytest.fixture
def open_api(serve: Callable[..., str], worker: Callable[..., Any]) -> tuple[str, str]:
    worker(app=APP)
    return _serve(serve, None, OPEN)


@pytest.fixture
def guarded_api(serve: Callable[..., str], worker: Callable[..., Any]) -> tuple[str, str]:
    worker(app=APP)
    return _serve(serve, TOKEN, GUARDED)


def _real_half(case: Any, run_id: str) -> None:
    """Every other case names a served workflow (one that takes any input) or a finished run."""
    params = case.path_parameters or {}
    for name, value in {"name": "anything", "run_id": run_id}.items():
        if name in params and zlib.crc32(repr(case.body).encode()) % 2:
            params[name] = value


@OPEN.parametrize()
@FUZZ
def test_the_document_without_a_token(case: Any, open_api: tuple[str, str]) -> None:
    url, run_id = open_api
    _real_half(case, run_id)
    case.call_and_validate(base_url=url, checks=ALL_CHECKS, timeout=20)


@GUARDED.parametrize()
@FUZZ
def test_the_document_with_a_token(case: Any, guarded_api: tuple[str, str]) -> None:
    url, run_id = guarded_api
    _real_half(case, run_id)
    case.call_and_validate(base_url=url, checks=ALL_CHECKS, timeout=20)
