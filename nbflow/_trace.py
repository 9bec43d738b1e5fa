"""A run's trace: its event log, folded, with pandas and plotly views."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

from . import _events as ev
from ._fold import RunState, fold

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go


class Trace:
    def __init__(self, run_id: str, events: list[ev.Event]) -> None:
        self.run_id = run_id
        self.raw_events = events
        self.state: RunState = fold(events, run_id)

    def __repr__(self) -> str:
        s = self.state
        return (
            f"<nbflow Trace run={self.run_id} status={s.status} "
            f"spans={len(s.spans)} events={s.count}>"
        )

    @cached_property
    def spans(self) -> pd.DataFrame:
        from .frames import spans_frame

        return spans_frame(self.state)

    @cached_property
    def events(self) -> pd.DataFrame:
        from .frames import events_frame

        return events_frame(self.run_id, self.raw_events)

    @property
    def usage(self) -> dict[str, Any]:
        return self.state.usage()

    @property
    def status(self) -> str:
        return self.state.status

    @property
    def output(self) -> str:
        """Everything the run streamed with ``nf.emit``, joined."""
        return "".join(self.state.chunks)

    def timeline(self) -> go.Figure:
        from .frames import timeline

        return timeline(self.spans, title=f"run {self.run_id}")

    def slowest(self, n: int = 10) -> pd.DataFrame:
        from .frames import slowest

        return slowest(self.spans, n)

    def tokens_by_model(self) -> pd.DataFrame:
        from .frames import tokens_by_model

        return tokens_by_model(self.spans)

    def retries_by_component(self) -> pd.DataFrame:
        from .frames import retries_by_component

        return retries_by_component(self.spans)

    def table(self) -> str:
        """The span tree as plain text, for terminals and logs."""
        from .frames import span_table

        return span_table(self.state)

    def to_otel(
        self,
        endpoint: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        service_name: str = "nbflow",
        project: str | None = None,
        timeout_s: float | None = None,
    ) -> str:
        """Send this run to an OTLP/HTTP endpoint as one trace; the trace id (hex).

        ``endpoint`` is a collector's base URL (``http://localhost:4318``, Phoenix's
        ``http://localhost:6006``) or its traces URL; default ``NBFLOW_OTLP_ENDPOINT``.
        Sending the same run again sends the same trace and span ids. Needs
        ``pip install 'nbflow[otel]'``; see ``nbflow.otel``.
        """
        from .constants import OTLP_TIMEOUT_S
        from .otel import export_trace

        return export_trace(
            self,
            endpoint,
            headers=headers,
            service_name=service_name,
            project=project,
            timeout_s=OTLP_TIMEOUT_S if timeout_s is None else timeout_s,
        )
