"""The front end's own checks, run where its build left node_modules: tsc, and jest's unit tests."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from .support import ROOT

EXTENSION = ROOT / "extension"


def npm(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("npm") is None or not (EXTENSION / "node_modules").is_dir():
        pytest.skip("extension/node_modules is missing (pip install . or npm ci in extension/)")
    return subprocess.run(
        ["npm", *args], cwd=EXTENSION, capture_output=True, text=True, timeout=100
    )


def test_typescript_type_checks() -> None:
    result = npm("run", "--silent", "check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_jest_unit_tests_pass() -> None:
    result = npm("test", "--silent")
    assert result.returncode == 0, result.stdout + result.stderr
