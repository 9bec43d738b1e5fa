"""Which notebook and kernel this process is, when it is a Jupyter kernel."""

from __future__ import annotations

import os
import sys
from typing import Any


def kernel_origin() -> dict[str, Any]:
    """``notebook`` and ``kernel`` for run metadata; empty outside a kernel.

    Jupyter Server tells a kernel its notebook path in ``JPY_SESSION_NAME``; the
    kernel id is the name of the connection file.
    """
    origin: dict[str, Any] = {}
    notebook = os.environ.get("JPY_SESSION_NAME")
    if notebook:
        origin["notebook"] = notebook
    ipykernel_app = sys.modules.get("ipykernel.kernelapp")
    if ipykernel_app is not None:
        app = ipykernel_app.IPKernelApp.initialized() and ipykernel_app.IPKernelApp.instance()
        connection_file = getattr(app, "connection_file", "") if app else ""
        if connection_file:
            name = os.path.basename(connection_file)
            origin["kernel"] = name.removeprefix("kernel-").removesuffix(".json")
    return origin
