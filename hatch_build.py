"""Build hook: nbflow's JupyterLab extension (``extension/``) is built with npm where Node.js
is installed, and left out, with one line saying how to get it, where it is not.

Everything else (the package, the kernel-side views, the server extension) needs no
Node.js. pip shows a build backend's output only with ``-v``, so the hook's news (a
build of a few minutes starting, or the extension skipped) also goes to the terminal
that pip runs in.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

EXTENSION_DIR = "extension"
BUILT_DIR = "nbflow/labextension"
# A usable build has all three: the JupyterLab extension, the viewer `nbflow api` serves at
# /ui, and the same viewer as the notebook widget's ES module.
BUILT_FILES = ("package.json", "ui/viewer.js", "ui/widget.js")
SHARED_DATA = {
    BUILT_DIR: "share/jupyter/labextensions/nbflow",
    f"{EXTENSION_DIR}/install.json": "share/jupyter/labextensions/nbflow/install.json",
}
NPM_SCRIPTS = {"standard": "build:prod", "editable": "build"}
SKIPPED = (
    "Node.js/npm not found, so the JupyterLab extension (runs panel, live outputs, "
    "`nbflow api`'s /ui) is skipped; everything else is installed. To get it, install "
    "Node.js and npm and run pip again, or install a wheel built where they are "
    "(README: Install)."
)


class LabExtensionHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return  # an sdist carries the extension's sources; its wheel builds them
        root = Path(self.root)
        if node_found():
            build(root / EXTENSION_DIR, NPM_SCRIPTS.get(version, "build:prod"))
        elif built(root):
            announce("Node.js/npm not found: shipping the JupyterLab extension already built")
        else:
            announce(SKIPPED)
            return
        if not built(root):
            raise RuntimeError(
                f"the extension build left no {' or '.join(BUILT_FILES)} in {BUILT_DIR}"
            )
        build_data["shared_data"].update(SHARED_DATA)


def node_found() -> bool:
    return shutil.which("node") is not None and shutil.which("npm") is not None


def built(root: Path) -> bool:
    return all((root / BUILT_DIR / name).is_file() for name in BUILT_FILES)


def build(extension: Path, script: str) -> None:
    announce(
        "building the JupyterLab extension with npm (a few minutes on a first install; "
        "`pip install -v` shows npm's output)"
    )
    # The npm build runs `jupyter-builder` (from jupyterlab): the build environment's.
    scripts = sysconfig.get_path("scripts")
    env = {**os.environ, "PATH": os.pathsep.join([scripts, os.environ.get("PATH", "")])}
    for command in (["npm", "install", "--no-audit", "--no-fund"], ["npm", "run", script]):
        done = subprocess.run(command, cwd=extension, env=env, stdout=sys.stderr, check=False)
        if done.returncode != 0:
            raise RuntimeError(
                f"`{' '.join(command)}` failed in {extension} (exit {done.returncode}); "
                "its output is above. Without Node.js on PATH the extension would be skipped."
            )
    announce("JupyterLab extension built")


def announce(line: str) -> None:
    message = f"nbflow: {line}"
    print(message, file=sys.stderr, flush=True)
    if sys.stderr.isatty():
        return
    try:
        with open("/dev/tty", "w") as terminal:
            terminal.write(f"\n{message}\n")
    except OSError:
        pass  # no terminal (CI, a service): the line is in the build's own output
