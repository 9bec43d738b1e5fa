"""The public surface: complete sorted exports, one version source, a light ``import nbflow``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from functools import cached_property
from pathlib import Path

import nbflow as nf

PACKAGE_DIR = Path(nf.__file__).parent
REPO_ROOT = PACKAGE_DIR.parent
HEAVY_MODULES = ("pandas", "plotly", "redis", "IPython", "openai", "fastapi")
VERSION_LINE = re.compile(r"""^__version__\s*=\s*["']([^"']+)["']""", re.MULTILINE)


def test_every_name_in_all_exists():
    missing = [name for name in nf.__all__ if not hasattr(nf, name)]
    assert missing == []


def test_all_is_sorted_and_has_no_duplicates():
    assert list(nf.__all__) == sorted(nf.__all__)
    assert len(set(nf.__all__)) == len(nf.__all__)


def test_public_classes_and_functions_are_exported():
    public = {
        name
        for name, value in vars(nf).items()
        if not name.startswith("_")
        and callable(value)
        and getattr(value, "__module__", "").startswith("nbflow")
    }
    hooks = {"load_ipython_extension"}  # IPython's entry point, not part of the API
    assert public - hooks - set(nf.__all__) == set()


def test_error_tree_has_one_root():
    errors = [getattr(nf, n) for n in nf.__all__ if isinstance(getattr(nf, n), type)]
    errors = [e for e in errors if issubclass(e, BaseException)]
    assert errors
    assert all(issubclass(e, nf.NbflowError) for e in errors)
    assert issubclass(nf.ConfigError, ValueError)
    assert issubclass(nf.CacheKeyError, TypeError)
    assert issubclass(nf.StepTimeout, TimeoutError)
    assert issubclass(nf.RunNotFound, KeyError)


def test_version_is_single_sourced_from_the_file_pyproject_names():
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert "version" in pyproject["project"]["dynamic"]
    assert "version" not in pyproject["project"]
    version_file = REPO_ROOT / pyproject["tool"]["hatch"]["version"]["path"]
    match = VERSION_LINE.search(version_file.read_text())
    assert match is not None
    assert nf.__version__ == match.group(1)
    definers = [p for p in PACKAGE_DIR.rglob("*.py") if VERSION_LINE.search(p.read_text())]
    assert definers == [version_file]


def test_version_looks_like_a_release_number():
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?\w+)?", nf.__version__)


def test_import_nbflow_does_not_import_heavy_or_optional_packages():
    script = (
        "import json, sys\n"
        "import nbflow\n"
        f"heavy = {list(HEAVY_MODULES)!r}\n"
        "print(json.dumps(sorted(m for m in heavy if m in sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
        timeout=60,
    )
    assert json.loads(done.stdout) == []


def _undocumented(owner: str, value: object) -> list[str]:
    missing = [] if getattr(value, "__doc__", None) else [owner]
    if isinstance(value, type) and value.__module__.startswith("nbflow"):
        for name, member in vars(value).items():
            documentable = callable(member) or isinstance(member, property | cached_property)
            if name.startswith("_") or not documentable:
                continue
            if isinstance(member, staticmethod | classmethod):
                member = member.__func__
            if not member.__doc__:
                missing.append(f"{owner}.{name}")
    return missing


def test_every_public_name_and_its_public_members_have_a_docstring():
    missing = [hole for name in nf.__all__ for hole in _undocumented(name, getattr(nf, name))]
    assert missing == []
