"""Fault injection at length: seeded trials over real workers and a real server.

Each trial submits runs of several steps that emit and mark progress, injects
seeded faults while they execute (kill -9 of a worker, SIGTERM, SIGSTOP past the
lease, kill -9 of the server for less and for more than a lease, CLIENT KILL of
every connection), waits for every run to end and checks every run's log against
the invariants in tests/chaos/harness.py. It prints the trials, the faults by
kind, the runs, how many extra attempts the faults caused, and every violation.

    .venv/bin/python bench/chaos.py --trials 200 [--seed 1] [--runs 6] [--faults 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.chaos.harness import Rig, trial  # noqa: E402 (the repo root goes first)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20, help="how many trials")
    parser.add_argument("--seed", type=int, default=1, help="seed of the first trial")
    parser.add_argument("--runs", type=int, default=6, help="runs submitted per trial")
    parser.add_argument("--faults", type=int, default=3, help="faults injected per trial")
    parser.add_argument("--workers", type=int, default=3, help="worker processes")
    args = parser.parse_args()
    rig = Rig(Path(tempfile.mkdtemp(prefix="nbf-chaos-")), workers=args.workers)
    rig.start()
    faults: Counter[str] = Counter()
    runs = reattempts = 0
    violations: list[str] = []
    started = time.monotonic()
    try:
        for n in range(args.trials):
            report = trial(rig, args.seed + n, runs=args.runs, faults=args.faults)
            faults.update(report.faults)
            runs += report.runs
            reattempts += report.reattempts
            violations += [f"trial {report.seed}: {v}" for v in report.violations]
            status = "ok" if not report.violations else f"{len(report.violations)} VIOLATIONS"
            print(
                f"trial {n + 1}/{args.trials} seed {report.seed}: {', '.join(report.faults)}; "
                f"{report.reattempts} extra attempts; {report.seconds:.1f} s; {status}",
                flush=True,
            )
    finally:
        rig.stop()
    minutes = (time.monotonic() - started) / 60
    print(
        f"\ntrials {args.trials}, runs {runs}, faults {sum(faults.values())} "
        f"({', '.join(f'{k} {v}' for k, v in sorted(faults.items()))}), "
        f"extra attempts {reattempts}, violations {len(violations)}, {minutes:.1f} min"
    )
    for violation in violations:
        print(f"  {violation}")
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
