"""Do heads specialize? Train the preset for several seeds, run `python -m engine analyze` on each, print the
ablation matrix (accuracy drop per reason when a head is zeroed, and per ADMIN check: heads often split ADMIN's
four checks) and how many heads own exactly one reason (drop >= 0.5 on it, <= 0.1 on every other reason).

Run: .venv/bin/python -m bench.specialization [--preset default] [--seeds 0 1 2 3 4]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REASONS = ("MEDICAL", "DOSAGE", "COST", "ADMIN")


def engine(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        raise SystemExit(f"python -m engine {args[0]} failed: {result.stderr.strip()[-400:]}")
    return result.stdout


def print_matrix(name: str, heads: list[dict]) -> int:
    print(f"  {name}: head | " + " | ".join(f"{r:>7}" for r in REASONS) + " | label | ADMIN: sex age specialty place")
    for head in heads:
        drops = " | ".join(f"{-head['ablation'][r]:>+7.2f}" for r in REASONS)
        kinds = " ".join(f"{0.0 - d:+.2f}" for d in head.get("admin_kinds", {}).values())
        print(f"  {'':>{len(name)}}  {head['head'] + 1:>4} | {drops} | {head['label']} | {kinds}")
    return sum("specialist" in h["label"] for h in heads)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="default")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int)
    args = parser.parse_args()
    owners = {}
    with tempfile.TemporaryDirectory() as folder:
        for seed in args.seeds:
            out = Path(folder) / f"seed{seed}"
            extra = ["--steps", str(args.steps)] if args.steps else []
            final = json.loads(engine("train", "--out", str(out), "--preset", args.preset, "--seed", str(seed),
                                      *extra).strip().splitlines()[-1])
            report = json.loads(engine("analyze", "--run", str(out)))
            print(f"seed {seed}: {final['steps']} steps, held-out accuracy {final['accuracy']:.3f}")
            for name, heads in report["heads"].items():
                count = print_matrix(name, heads)
                if name.endswith(".cross"):
                    owners[seed] = count
    print("\ncross-attention heads that own one reason, per seed:", owners)
    enough = sum(count >= 3 for count in owners.values())
    print(f"seeds with >= 3 specialist heads: {enough} of {len(owners)} (target: >= 3 of 5)")


if __name__ == "__main__":
    main()
