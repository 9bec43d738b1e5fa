"""Debian's Chromium for the browser tests (never a downloaded browser).

``/usr/bin/chromium`` is a launcher script; Playwright needs the binary it starts.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_executable() -> str | None:
    """The real Chromium binary behind the launcher script, or None if not installed."""
    override = os.environ.get("NBFLOW_CHROMIUM")
    if override:
        return override
    launcher = shutil.which("chromium")
    if launcher is None:
        return None
    text = Path(launcher).read_text(errors="replace")
    match = re.search(r"^APPNAME=(\S+)", text, re.M)
    libdir = re.search(r"^LIBDIR=(\S+)", text, re.M)
    if match and libdir:
        folder = libdir.group(1).replace("$APPNAME", match.group(1)).strip("\"'")
        binary = Path(folder) / match.group(1)
        if binary.exists():
            return str(binary)
    fallback = Path("/usr/lib/chromium/chromium")
    return str(fallback) if fallback.exists() else launcher


def require_chromium() -> str:
    """The binary, or skip the test with the reason (CI installs chromium from Debian)."""
    binary = chromium_executable()
    if binary is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    return binary


def artifact(name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name
