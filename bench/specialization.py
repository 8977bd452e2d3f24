"""Do heads specialize? A seed study of the preset (engine.reports.study: each seed trained in its own process, measured
as `python -m engine analyze` measures it), printing per seed what each check needs from each cross-attention head
(activation patching on twin claims, engine.interpret.patching) with the head's label, then how many seeds gave each
reason its own head and the specialists per seed with a bootstrap interval.

Run: .venv/bin/python -m bench.specialization [--preset default] [--seeds 0-4] [--steps N] [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from engine.interpret.pairs import CHECKS
from engine.reports.study import parse_seeds, run_study
from engine.reports.study_results import SeedResult, seed_result, summarize


def print_seed(result: SeedResult) -> None:
    print(f"seed {result.seed}: {result.steps} steps, held-out accuracy {result.accuracy:.3f}")
    print("  head | " + " | ".join(f"{c:>9}" for c in CHECKS) + " | label")
    for index, (needs, label) in enumerate(zip(result.necessity, result.labels, strict=True)):
        print(f"  {index + 1:>4} | " + " | ".join(f"{needs.get(c, 0.0):>9.0%}" for c in CHECKS) + f" | {label}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="default")
    parser.add_argument("--seeds", default="0-4")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--out", type=Path, help="keep the study here (default: a temporary folder)")
    args = parser.parse_args()
    train_args = ["--preset", args.preset, *(["--steps", str(args.steps)] if args.steps else [])]
    with tempfile.TemporaryDirectory() as scratch:
        record = run_study(args.out or Path(scratch), parse_seeds(args.seeds), train_args)
    results = [seed_result(r) for r in record["results"]]
    print()
    for result in results:
        print_seed(result)
    summary = summarize(results)
    print(f"\n{summary['sentence']}")
    print("specialists per seed:", summary["specialists_per_seed"])


if __name__ == "__main__":
    main()
