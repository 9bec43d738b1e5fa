"""Per-call cost of a traced nbflow component, against a plain call and ``@mlflow.trace``.

Each contender is a root function that calls a one-line leaf many times, so the
figure is the cost of one nested traced call inside a run: a plain function, an
nbflow component inside a workflow, and an ``@mlflow.trace`` function inside a
traced root (``pip install -e '.[bench]'`` for ``mlflow-tracing``).

MLflow is kept in-process: its own span processor builds every span and trace
as usual, but the finished trace goes to a list instead of a tracking server,
just as nbflow's in-process run keeps its events in memory. Sockets are
disabled for the whole run, so nothing can reach the network.

    python bench/overhead.py [--calls 20000] [--mlflow-calls 2000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

GOAL_RATIO = 50  # nbflow's per-call overhead must be at most 1/50 of mlflow's


def forbid_network() -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the benchmark must not touch the network")

    socket.socket.connect = refuse  # type: ignore[method-assign]
    socket.socket.connect_ex = refuse  # type: ignore[method-assign]
    socket.create_connection = refuse
    socket.getaddrinfo = refuse


def per_call_us(root: Callable[[int], Any], calls: int, repeats: int) -> float:
    """Median over ``repeats`` runs of one root call making ``calls`` nested calls."""
    root(min(calls, 200))  # warm up imports and caches
    samples = []
    for _ in range(repeats):
        gc.collect()
        started = time.perf_counter()
        root(calls)
        samples.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(samples)


# --- contenders --------------------------------------------------------------------


def leaf(x: int) -> int:
    return x + 1


def plain_root(calls: int) -> int:
    total = 0
    for i in range(calls):
        total += leaf(i)
    return total


def nbflow_root() -> Callable[[int], Any]:
    import nbflow as nf

    traced_leaf = nf.component(leaf)

    @nf.workflow
    def root(calls: int) -> int:
        total = 0
        for i in range(calls):
            total += traced_leaf(i)
        return total

    def run(calls: int) -> int:
        value = root(calls)
        events = nf.last_run().sink.events
        assert len(events) == 2 * (calls + 1) + 2, "nbflow did not record every span"
        return value

    return run


def mlflow_root(tracking_dir: Path) -> tuple[Callable[[int], Any], str]:
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    os.environ["DO_NOT_TRACK"] = "true"
    # Read (never written) when spans end; without it MLflow probes for a local store.
    os.environ["MLFLOW_TRACKING_URI"] = tracking_dir.as_uri()

    import mlflow
    import mlflow.tracing.provider as provider
    from mlflow.entities.trace_location import MlflowExperimentLocation
    from mlflow.tracing.processor.mlflow_v3 import MlflowV3SpanProcessor
    from mlflow.tracing.trace_manager import InMemoryTraceManager
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class KeepLastTrace(SpanExporter):
        """Collects each finished trace from MLflow's trace manager, as its exporter does."""

        last: Any = None

        def export(self, spans: Any) -> SpanExportResult:
            manager = InMemoryTraceManager.get_instance()
            for span in spans:
                if span.parent is None:
                    finished = manager.pop_trace(span.context.trace_id)
                    if finished is not None:
                        self.last = finished.trace
            return SpanExportResult.SUCCESS

    exporter = KeepLastTrace()

    def processors(disabled: bool = False) -> list[Any]:
        return [] if disabled else [MlflowV3SpanProcessor(exporter, export_metrics=False)]

    provider._get_span_processors = processors
    mlflow.tracing.set_destination(MlflowExperimentLocation(experiment_id="0"))

    traced_leaf = mlflow.trace(leaf)

    @mlflow.trace
    def root(calls: int) -> int:
        total = 0
        for i in range(calls):
            total += traced_leaf(i)
        return total

    def run(calls: int) -> int:
        value = root(calls)
        spans = exporter.last.data.spans if exporter.last is not None else []
        assert len(spans) == calls + 1, "mlflow did not record every span"
        exporter.last = None
        return value

    return run, mlflow.__version__


# --- report --------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000, help="nested calls per nbflow run")
    parser.add_argument(
        "--mlflow-calls", type=int, default=2_000, help="nested calls per mlflow run"
    )
    parser.add_argument("--repeats", type=int, default=5)
    options = parser.parse_args()
    forbid_network()

    import nbflow as nf

    plain = per_call_us(plain_root, options.calls, options.repeats)
    ours = per_call_us(nbflow_root(), options.calls, options.repeats)
    with tempfile.TemporaryDirectory(prefix="nbflow-bench-") as tmp:
        tracking_dir = Path(tmp)
        try:
            mlflow_run, mlflow_version = mlflow_root(tracking_dir)
        except ImportError:
            mlflow_run, mlflow_version = None, None
        peer = None
        if mlflow_run is not None:
            peer = per_call_us(mlflow_run, options.mlflow_calls, options.repeats)
        written = list(tracking_dir.iterdir())

    print(
        f"python {platform.python_version()}, nbflow {nf.__version__}, "
        f"mlflow-tracing {mlflow_version or 'not installed'}"
    )
    print(
        f"nested calls per root run: plain/nbflow {options.calls}, mlflow {options.mlflow_calls}; "
        f"median of {options.repeats} runs"
    )
    print(f"  plain function      {plain:10.2f} us/call")
    print(f"  nbflow component    {ours:10.2f} us/call   overhead {ours - plain:8.2f} us")
    print(f"  nbflow/plain        {ours / plain:10.0f} x")
    if peer is None:
        print("  @mlflow.trace       skipped: pip install -e '.[bench]' to compare")
        return 0
    ratio = (peer - plain) / (ours - plain)
    print(f"  @mlflow.trace       {peer:10.2f} us/call   overhead {peer - plain:8.2f} us")
    print(f"  mlflow/nbflow       {ratio:10.1f} x   (overhead against overhead)")
    verdict = "met" if ratio >= GOAL_RATIO else "NOT met"
    print(f"goal: nbflow overhead <= 1/{GOAL_RATIO} of mlflow's: {verdict}")
    print(f"files written by mlflow: {len(written)}; network: refused for the whole run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
