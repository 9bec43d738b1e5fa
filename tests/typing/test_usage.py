"""The public surface keeps its types: mypy (strict) checks usage.py as users write it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

USAGE = Path(__file__).with_name("usage.py")
REPO_ROOT = Path(__file__).parents[2]


def test_usage_type_checks_under_strict_mypy() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", str(USAGE)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success: no issues found in 1 source file" in done.stdout
