"""Per-call cost of a traced nbflow component, against a plain call and ``@mlflow.trace``.

Each contender is a root function that calls a one-line leaf many times, so the
figure is the cost of one nested traced call inside a run: a plain function, an
nbflow component inside a workflow, and an ``@mlflow.trace`` function inside a
traced root (``pip install -e '.[bench]'`` for ``mlflow-tracing``).

MLflow is kept in-process: its own span processor builds every span and trace
as usual, but the finished trace goes to a list instead of a tracking server,
just as nbflow's in-process run keeps its events in memory. Sockets are
disabled for the whole run, so nothing can reach the network.

Each round measures the three back to back; the ratio is taken within a round.

    .venv/bin/python bench/overhead.py [--calls 20000] [--mlflow-calls 2000] [--repeats 5]
        [--rounds 3]
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
GOAL_US = 4.0  # and at most this many microseconds


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
    parser.add_argument("--rounds", type=int, default=3, help="plain, nbflow, mlflow each round")
    options = parser.parse_args()
    forbid_network()

    import nbflow as nf

    with tempfile.TemporaryDirectory(prefix="nbflow-bench-") as tmp:
        tracking_dir = Path(tmp)
        try:
            mlflow_run, mlflow_version = mlflow_root(tracking_dir)
        except ImportError:
            mlflow_run, mlflow_version = None, None
        print(
            f"python {platform.python_version()}, nbflow {nf.__version__}, "
            f"mlflow-tracing {mlflow_version or 'not installed'}"
        )
        print(
            f"nested calls per root run: plain/nbflow {options.calls}, mlflow "
            f"{options.mlflow_calls}; median of {options.repeats} runs; {options.rounds} rounds"
        )
        ours_root = nbflow_root()
        rounds = []
        for i in range(options.rounds):
            plain = per_call_us(plain_root, options.calls, options.repeats)
            ours = per_call_us(ours_root, options.calls, options.repeats) - plain
            peer = None
            if mlflow_run is not None:
                peer = per_call_us(mlflow_run, options.mlflow_calls, options.repeats) - plain
            rounds.append((ours, peer))
            line = f"round {i + 1}: plain {plain:.2f} us/call; overhead: nbflow {ours:.2f} us"
            if peer is not None:
                line += f", @mlflow.trace {peer:.1f} us, mlflow/nbflow {peer / ours:.1f}x"
            print(line, flush=True)
        written = list(tracking_dir.iterdir())
    return verdict(rounds, written)


def verdict(rounds: list[tuple[float, float | None]], written: list[Path]) -> int:
    ours = statistics.median(r[0] for r in rounds)
    met_us = ours <= GOAL_US
    print(
        f"goal: nbflow overhead <= {GOAL_US:g} us: {ours:.2f} us (median of rounds), "
        f"{'met' if met_us else 'NOT met'}"
    )
    if rounds[0][1] is None:
        print("  @mlflow.trace       skipped: pip install -e '.[bench]' to compare")
        return 0
    ratios = [peer / mine for mine, peer in rounds if peer is not None]
    ratio = statistics.median(ratios)
    print(
        f"goal: nbflow overhead <= 1/{GOAL_RATIO} of mlflow's: {ratio:.1f}x (median of the"
        f" rounds' ratios: {', '.join(f'{r:.1f}x' for r in ratios)}), "
        f"{'met' if ratio >= GOAL_RATIO else 'NOT met'}"
    )
    print(f"files written by mlflow: {len(written)}; network: refused for the whole run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
