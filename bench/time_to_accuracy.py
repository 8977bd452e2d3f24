"""Steps and seconds to 90/95/98% held-out exact match, per seed, for a preset (default: "default").

Run: .venv/bin/python -m bench.time_to_accuracy [--preset default] [--seeds 0 1 2] [--max-seconds 240] [--threads 1]
(--threads 0: measured 1 vs 2 as it trains, the faster mode that does not repeat a run.)
Each seed runs as its own `python -m engine train` process, one after another, so runs never share the cores.
Every seed trains on the same generated claims (data seed 0, as in the app): the first run builds the pool (a
cold start, as on a fresh machine) and caches it; later runs read it back, as every later run in the app does.
Medians are printed both ways: as measured, and as if every start were cold. Wall seconds count from the start of
the run: setup (the claims, the model and optimizer, the step-0 measurement) plus training.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LEVELS = ("90%", "95%", "98%")


def run(preset: str, seed: int, max_seconds: float, threads: int, out: Path) -> dict:
    command = [
        sys.executable,
        "-m",
        "engine",
        "train",
        "--out",
        str(out),
        "--preset",
        preset,
        "--seed",
        str(seed),
        "--target-accuracy",
        "0.98",
        "--max-seconds",
        str(max_seconds),
        "--threads",
        str(threads),
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"seed {seed} failed: {result.stderr.strip().splitlines()[-1:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def cell(reached: dict | None) -> str:
    return "-" if reached is None else f"{reached['step']} / {reached['seconds']:.0f}s / {reached['wall_seconds']:.0f}s"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="default")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-seconds", type=float, default=240)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in args.seeds:
            result = run(args.preset, seed, args.max_seconds, args.threads, Path(folder) / f"seed{seed}")
            rows.append((seed, result))
            print(f"seed {seed}: {json.dumps(result)}", file=sys.stderr, flush=True)
    threads = args.threads or "measured"
    print(
        f"preset {args.preset}, threads {threads}: step / training s / wall s (incl. setup) to reach held-out accuracy"
    )
    print(
        f"{'seed':>4} | {'prep s':>6} | {'setup s':>7} | {'steps/s':>7} | "
        + " | ".join(f"{lvl:>20}" for lvl in LEVELS)
        + " | final"
    )
    for seed, r in rows:
        cells = " | ".join(f"{cell(r['reached'][lvl]):>20}" for lvl in LEVELS)
        speed = f"{r['prepare_seconds']:>6.1f} | {r['setup_seconds']:>7.1f} | {r['steps_per_second']:>7.1f}"
        print(f"{seed:>4} | {speed} | {cells} | {r['accuracy']:.3f}")
    cold_prepare = rows[0][1]["prepare_seconds"]  # the first run built the pool
    print(f"cold start data preparation: {cold_prepare:.1f} s")
    for level in LEVELS:
        reached = [(r["reached"][level], r) for _, r in rows if r["reached"][level]]
        if len(reached) < len(rows):
            print(f"{level}: reached in {len(reached)} of {len(rows)} seeds")
            continue
        walls = statistics.median(point["wall_seconds"] for point, _ in reached)
        cold = statistics.median(point["wall_seconds"] - r["prepare_seconds"] + cold_prepare for point, r in reached)
        print(f"median wall seconds to {level}: {walls:.1f} as measured, {cold:.1f} if every start were cold")


if __name__ == "__main__":
    main()
