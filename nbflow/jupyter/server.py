"""The Jupyter server extension: runs, run details, live events and cancel under ``/nbflow/api/``.

Enabled by the ``jupyter_server_config.d/nbflow.json`` file the wheel installs.
The runtime is ``NBFLOW_REDIS_URL``, else the embedded default (whose server is
started if needed, but never its workers: the server only reads runs).
"""

from __future__ import annotations

from jupyter_server.extension.application import ExtensionApp

from .handlers import Backend, routes


class NbflowExtension(ExtensionApp):
    name = "nbflow"
    description = "nbflow runs: list, detail, live events and cancel"
    load_other_extensions = True

    backend: Backend | None = None

    def initialize_settings(self) -> None:
        self.backend = Backend()
        assert self.serverapp is not None  # set before an extension's settings
        self.serverapp.web_app.settings["nbflow_backend"] = self.backend

    def initialize_handlers(self) -> None:
        self.handlers.extend(routes())

    async def stop_extension(self) -> None:
        if self.backend is not None:
            await self.backend.close()


def _jupyter_server_extension_points() -> list[dict[str, object]]:
    return [{"module": "nbflow.jupyter.server", "app": NbflowExtension}]
