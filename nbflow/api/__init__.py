"""nbflow's HTTP service (FastAPI): ``create_app()``, served by ``nbflow api``.

FastAPI is imported on first use of ``create_app``, so that the CLI can read
this package's defaults without paying for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
