"""Installing nbflow as users do, on a machine with and without Node.js.

A source install with no node on PATH succeeds without the JupyterLab extension and
says so on the terminal; a wheel built where Node.js is carries the extension to a
machine without it. Each install goes into a fresh venv, from a copy of the repo's
tracked files (what a fresh clone has), with node and npm hidden from PATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NODE_TOOLS = {"node", "nodejs", "npm", "npx", "corepack", "yarn", "pnpm"}
# Runs a command in a pseudo-terminal, echoing what it shows there: what a user at a
# terminal sees, where pip hides the build's own output.
IN_TERMINAL = "import pty, sys; sys.exit(pty.spawn(sys.argv[1:]) >> 8)"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def no_node_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A PATH with every program of this one except Node.js and its package managers."""
    shelf = tmp_path_factory.mktemp("bin-without-node")
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            target = shelf / entry.name
            if entry.name in NODE_TOOLS or target.exists() or target.is_symlink():
                continue
            if entry.is_file() and os.access(entry.path, os.X_OK):
                target.symlink_to(entry.path)
    path = str(shelf)
    assert shutil.which("node", path=path) is None and shutil.which("npm", path=path) is None
    return path


def fresh_clone(where: Path) -> Path:
    """The repo's tracked and new, not ignored, files: no build output, no node_modules."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    )
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (where / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, where / name)
    return where


def run(
    argv: Sequence[str], *, path: str, terminal: bool = False, timeout_s: float = 300
) -> subprocess.CompletedProcess[str]:
    # Nothing of this checkout's may leak in: no PYTHONPATH, and not its directory as the
    # working directory (`python -c` would import nbflow from it).
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JUPYTER", "NBFLOW_", "PYTHON", "VIRTUAL_ENV"))
    }
    env.update(PATH=path, PIP_DISABLE_PIP_VERSION_CHECK="1")
    command = [sys.executable, "-c", IN_TERMINAL, *argv] if terminal else list(argv)
    done = subprocess.run(
        command,
        cwd=tempfile.gettempdir(),
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return done


@pytest.fixture(scope="module")
def venv_without_node(
    tmp_path_factory: pytest.TempPathFactory, no_node_path: str
) -> tuple[Path, str]:
    """A fresh venv into which `pip install <clone>` ran with no node on PATH; its output."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    clone = fresh_clone(tmp_path_factory.mktemp("clone"))
    installed = run(
        [str(venv / "bin" / "pip"), "install", str(clone)],
        path=f"{venv / 'bin'}{os.pathsep}{no_node_path}",
        terminal=True,
    )
    return venv, installed.stdout


def lab_extensions(venv: Path, no_node_path: str) -> str:
    done = run(
        [str(venv / "bin" / "jupyter"), "labextension", "list"],
        path=f"{venv / 'bin'}{os.pathsep}{no_node_path}",
    )
    return done.stdout + done.stderr


def test_source_install_without_node_succeeds_and_says_the_extension_was_skipped(
    venv_without_node: tuple[Path, str], no_node_path: str
) -> None:
    venv, shown = venv_without_node
    assert "Node.js/npm not found, so the JupyterLab extension" in shown
    assert "install Node.js and npm and run pip again" in shown
    assert "Successfully installed" in shown
    version = run([str(venv / "bin" / "nbflow"), "--version"], path=no_node_path)
    assert version.stdout.startswith("nbflow ")
    # Without the viewer bundle, runs show as HTML snapshots that the kernel updates.
    views = run(
        [str(venv / "bin" / "python"), "-c", "import nbflow.jupyter.view as v; print(v.ASSETS)"],
        path=no_node_path,
    )
    assert views.stdout.strip() == "None"
    assert "nbflow" not in lab_extensions(venv, no_node_path)


@pytest.mark.skipif(shutil.which("npm") is None, reason="building the extension needs npm")
def test_a_wheel_built_with_node_installs_the_extension_where_node_is_missing(
    tmp_path: Path, venv_without_node: tuple[Path, str], no_node_path: str
) -> None:
    clone = fresh_clone(tmp_path / "clone")
    wheel, shown = build_wheel(clone, tmp_path / "dist", path=os.environ["PATH"])
    assert "nbflow: building the JupyterLab extension with npm" in shown
    assert "labextensions/nbflow/package.json" in " ".join(zipfile.ZipFile(wheel).namelist())

    venv, _ = venv_without_node
    run(
        [str(venv / "bin" / "pip"), "install", "--no-deps", "--force-reinstall", str(wheel)],
        path=f"{venv / 'bin'}{os.pathsep}{no_node_path}",
    )
    listed = lab_extensions(venv, no_node_path)
    section = listed.split(str(venv / "share" / "jupyter" / "labextensions"), 1)[1]
    assert "nbflow v" in section and "enabled" in section and "OK" in section
    find_viewer = "from nbflow.api.ui import assets_dir; print(assets_dir())"
    viewer = run([str(venv / "bin" / "python"), "-c", find_viewer], path=no_node_path)
    assert viewer.stdout.strip().startswith(str(venv / "share" / "jupyter" / "labextensions"))
    find_widget = "import nbflow.jupyter.view as v; print(v.ASSETS / 'widget.js')"
    widget = run([str(venv / "bin" / "python"), "-c", find_widget], path=no_node_path)
    assert widget.stdout.strip().startswith(str(venv / "share" / "jupyter" / "labextensions"))

    # Built once, the extension ships from the tree even where node is missing.
    rebuilt, shown = build_wheel(clone, tmp_path / "again", path=no_node_path)
    assert "shipping the JupyterLab extension already built" in shown
    assert "labextensions/nbflow/package.json" in " ".join(zipfile.ZipFile(rebuilt).namelist())


def build_wheel(source: Path, out: Path, *, path: str) -> tuple[Path, str]:
    """`pip wheel` of ``source`` with this interpreter's build tools; the wheel and what
    the build said (``-v``: pip shows the build's own output)."""
    pip = [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation"]
    done = run([*pip, "-w", str(out), str(source)], path=path)
    (wheel,) = out.glob("nbflow-*.whl")
    return wheel, done.stdout + done.stderr
