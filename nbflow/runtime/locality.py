"""Whether the embedded pool can import a workflow's module, and shipping it by value if not.

A workflow from a module travels by name and the worker imports it. The embedded
pool's workers start in the nbflow home, so a module that sits beside the notebook
(``mylib.py``, found through the kernel's working directory) is not importable
there. Such a module is registered with cloudpickle to travel by value instead,
as notebook code does. Modules under the interpreter's own library and
site-packages directories are taken as importable; for any other, a short-lived
interpreter set up like the pool's workers is asked, once per module and process.
"""

from __future__ import annotations

import logging
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import cloudpickle

log = logging.getLogger("nbflow.client")

_FIND_SPEC = (
    "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec(sys.argv[1]) else 1)"
)
_CHECK_TIMEOUT_S = 30
_decided: dict[str, bool] = {}  # top-level module name -> the pool imports it by name


def ship_by_value_unless_importable(module_name: str | None, home: Path) -> None:
    """Register ``module_name``'s top-level module by value if the pool cannot import it."""
    top = (module_name or "").partition(".")[0]
    if not top or top in ("__main__", "nbflow") or top in _decided:
        return
    module = sys.modules.get(top)
    where = getattr(module, "__file__", None)
    importable = where is None or _installed(Path(where)) or _pool_imports(top, home)
    _decided[top] = importable
    if not importable:
        log.info("module %s is shipped by value: the embedded pool cannot import it", top)
        cloudpickle.register_pickle_by_value(module)


def _installed(path: Path) -> bool:
    return any(path.resolve().is_relative_to(root) for root in _library_roots())


def _library_roots() -> list[Path]:
    names = ("stdlib", "platstdlib", "purelib", "platlib")
    roots = {sysconfig.get_paths()[name] for name in names}
    roots.update(site.getsitepackages())
    roots.add(site.getusersitepackages())
    return [Path(root).resolve() for root in roots]


def _pool_imports(top: str, home: Path) -> bool:
    from .pool import supervisor_env

    try:
        done = subprocess.run(
            [sys.executable, "-c", _FIND_SPEC, top],
            cwd=home,
            env=supervisor_env(),
            capture_output=True,
            timeout=_CHECK_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return True  # unknown: by name (the default); a worker that cannot import it says so
    return done.returncode == 0
