"""Where the built run viewer is: beside the package (a source tree, an editable install)
or where pip put nbflow's JupyterLab extension (a wheel's shared data)."""

from __future__ import annotations

from pathlib import Path


def viewer_dir(name: str = "viewer.js") -> Path | None:
    """The folder holding the viewer bundle ``name`` (``viewer.js`` for /ui, ``widget.js``
    for the notebook widget), or None where the extension was not built."""
    from jupyter_core.paths import jupyter_path

    here = Path(__file__).resolve().parent / "labextension" / "ui"
    shared = [Path(p) / "nbflow" / "ui" for p in jupyter_path("labextensions")]
    return next((d for d in (here, *shared) if (d / name).is_file()), None)
