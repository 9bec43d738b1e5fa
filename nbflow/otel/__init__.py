"""OpenTelemetry export: runs as OTLP traces over HTTP, for Phoenix, Jaeger or any collector.

    run.trace().to_otel("http://localhost:6006")       # one run, by hand
    nbflow export                                      # every run as it ends (NBFLOW_OTLP_ENDPOINT)

Needs the ``otel`` extra (``pip install 'nbflow[otel]'``): the OpenTelemetry SDK
and its OTLP/HTTP exporter. Workers never import it; ``nbflow export`` follows
the runtime from a process of its own (``nbflow.otel.follow``).

The endpoint is a collector's base URL (``/v1/traces`` is added) or its full
traces URL; with none given, ``NBFLOW_OTLP_ENDPOINT``, else the SDK's own
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT`` (and
``OTEL_EXPORTER_OTLP_HEADERS`` for headers not given).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from nbflow._fold import RunState
from nbflow._version import __version__
from nbflow.constants import ENV_OTLP_ENDPOINT, OTLP_TIMEOUT_S
from nbflow.errors import ConfigError, NbflowError

if TYPE_CHECKING:
    from nbflow._trace import Trace

TRACES_PATH = "/v1/traces"
_SDK_ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
MISSING_EXTRA = (
    "OpenTelemetry export needs the OpenTelemetry SDK and its OTLP/HTTP exporter: "
    "pip install 'nbflow[otel]'"
)


class ExportFailed(NbflowError):
    """The collector did not take the spans (unreachable, or it refused them)."""


def traces_url(endpoint: str | None) -> str | None:
    """The OTLP/HTTP traces URL to send to; None when the SDK's own variables say it."""
    url = endpoint or os.environ.get(ENV_OTLP_ENDPOINT)
    if not url:
        if any(os.environ.get(name) for name in _SDK_ENDPOINTS):
            return None
        raise ConfigError(
            f"no OTLP endpoint: pass endpoint= or set {ENV_OTLP_ENDPOINT} "
            "(a collector's base URL, e.g. http://localhost:4318, or Phoenix's http://localhost:6006)"
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"an OTLP endpoint is an http(s) URL, got {url!r}")
    path = parts.path.rstrip("/")
    if not path.endswith(TRACES_PATH):
        path += TRACES_PATH
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


class OtlpExporter:
    """Sends folded runs to one OTLP/HTTP endpoint; reuse it for many runs, then ``close``.

    :param endpoint: base or traces URL; default from the environment (see the module).
    :param headers: sent with every request (e.g. an API key); default from
        ``OTEL_EXPORTER_OTLP_HEADERS``.
    :param service_name: the ``service.name`` of the resource the spans belong to.
    :param project: the Phoenix project the spans land in (``openinference.project.name``).
    :param timeout_s: how long one export may take, retries of the SDK included.
    """

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        service_name: str = "nbflow",
        project: str | None = None,
        timeout_s: float = OTLP_TIMEOUT_S,
    ) -> None:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource

            from nbflow.otel._spans import SpanMaker
        except ImportError as error:
            raise ConfigError(f"{MISSING_EXTRA} ({error})") from None
        self.url = traces_url(endpoint)
        attributes: dict[str, Any] = {"service.name": service_name, "nbflow.version": __version__}
        if project:
            attributes["openinference.project.name"] = project
        self._maker = SpanMaker(Resource.create(attributes))
        self._exporter = OTLPSpanExporter(
            endpoint=self.url, headers=dict(headers) if headers else None, timeout=timeout_s
        )
        self._lock = threading.Lock()

    def export(self, run: Trace | RunState) -> str:
        """Send one run as one trace; its trace id (32 hex digits). ExportFailed if not taken."""
        from opentelemetry.sdk.trace.export import SpanExportResult

        from nbflow.otel._spans import trace_id_of

        state = run if isinstance(run, RunState) else run.state
        with self._lock:
            spans = self._maker.spans(state)
            result = self._exporter.export(spans)
        if result is not SpanExportResult.SUCCESS:
            raise ExportFailed(
                f"run {state.run_id}: the OTLP endpoint {self.url or '(from OTEL_* variables)'} "
                "did not take its spans (see the log of opentelemetry.exporter for why)"
            )
        return f"{trace_id_of(state.run_id):032x}"

    def close(self) -> None:
        self._exporter.shutdown()  # type: ignore[no-untyped-call]
        self._maker.close()

    def __enter__(self) -> OtlpExporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def export_trace(
    trace: Trace,
    endpoint: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    service_name: str = "nbflow",
    project: str | None = None,
    timeout_s: float = OTLP_TIMEOUT_S,
) -> str:
    """``Trace.to_otel``: one run, one exporter made and closed for it; the trace id."""
    with OtlpExporter(
        endpoint, headers=headers, service_name=service_name, project=project, timeout_s=timeout_s
    ) as exporter:
        return exporter.export(trace)


__all__ = ["ExportFailed", "OtlpExporter", "export_trace", "traces_url"]
