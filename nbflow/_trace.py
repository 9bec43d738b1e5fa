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
    """One run's trace: its events folded into spans, as DataFrames and a timeline.

    ``spans`` and ``events`` are DataFrames, ``usage`` the token and cost totals,
    ``timeline()`` a plotly Figure.
    """

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
        """One row per span: timing, status, attempts, cache hits, model and tokens."""
        from .frames import spans_frame

        return spans_frame(self.state)

    @cached_property
    def events(self) -> pd.DataFrame:
        """One row per event of the run's log, in log order."""
        from .frames import events_frame

        return events_frame(self.run_id, self.raw_events)

    @property
    def usage(self) -> dict[str, Any]:
        """Token and cost totals over the run's LLM calls (cache hits excluded)."""
        return self.state.usage()

    @property
    def status(self) -> str:
        """The run's status as its log tells it."""
        return self.state.status

    @property
    def output(self) -> Any:
        """The run's return value as its log records it (a JSON preview); None until it ends."""
        return self.state.output

    @property
    def emitted(self) -> str:
        """Everything the run streamed with ``nf.emit``, joined as text."""
        return self.state.emitted

    @property
    def emits(self) -> list[Any]:
        """Each ``nf.emit`` as it was made: text, or the JSON value it was given."""
        return [
            e["value"] if "value" in e else str(e.get("chunk", ""))
            for e in self.raw_events
            if e.get("type") == ev.OUTPUT
        ]

    def timeline(self) -> go.Figure:
        """The spans as a plotly timeline (a Gantt chart)."""
        from .frames import timeline

        return timeline(self.spans, title=f"run {self.run_id}")

    def slowest(self, n: int = 10) -> pd.DataFrame:
        """The ``n`` slowest spans, slowest first."""
        from .frames import slowest

        return slowest(self.spans, n)

    def tokens_by_model(self) -> pd.DataFrame:
        """Tokens and cost per model over the run's LLM calls (cache hits excluded)."""
        from .frames import tokens_by_model

        return tokens_by_model(self.spans)

    def retries_by_component(self) -> pd.DataFrame:
        """Calls and retries per component name."""
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
