"""Command line: `python -m engine train|predict|analyze`. Errors are one plain line on stderr, never a traceback."""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from engine.inference import Predictor, analyze_run
from engine.presets import PRESETS, preset
from engine.runs import RunError
from engine.telemetry import TelemetryHub
from engine.trainer import OPTIMIZERS, ConfigError, Trainer

MAX_CSV_BYTES = 50 * 1024 * 1024


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description="Headwatch engine")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train a run into a folder")
    train.add_argument("--out", type=Path, required=True)
    train.add_argument("--preset", default="default", choices=sorted(PRESETS))
    train.add_argument("--seed", type=int, help="starting weights and the order claims are drawn in")
    train.add_argument("--data-seed", type=int, help="which claims are generated (default 0, as in the app)")
    train.add_argument("--steps", type=int)
    train.add_argument("--target-accuracy", type=float)
    train.add_argument("--max-seconds", type=float)
    train.add_argument("--optimizer", choices=OPTIMIZERS)
    train.add_argument("--lr", type=float)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--threads", type=int, help="intra-op threads; 0 (the default) measures 1 vs 2 as it trains")
    predict = commands.add_parser("predict", help="judge claims (one per line on stdin, or --csv)")
    predict.add_argument("--run", type=Path, required=True)
    predict.add_argument("--csv", type=Path)
    analyze = commands.add_parser("analyze", help="per-head specialization of a saved run")
    analyze.add_argument("--run", type=Path, required=True)
    return parser


def _first_reach(evals: tuple, level: float, setup_seconds: float) -> dict | None:
    """Where held-out accuracy first reached `level`: its step, training seconds, and wall seconds from the start
    (setup included: the claims, the model, the optimizer, the step-0 measurement)."""
    for point in evals:
        if point.heldout_accuracy >= level:
            return {"step": point.step, "seconds": round(point.seconds, 2),
                    "wall_seconds": round(point.seconds + setup_seconds, 2)}
    return None


def train(args: argparse.Namespace) -> int:
    config = preset(args.preset)
    overrides = {"seed": args.seed, "data_seed": args.data_seed, "steps": args.steps,
                 "target_accuracy": args.target_accuracy, "max_seconds": args.max_seconds,
                 "optimizer": args.optimizer, "lr": args.lr, "batch_size": args.batch_size, "threads": args.threads}
    for name, value in overrides.items():
        if value is not None:
            setattr(config, name, value)
    config.validate()
    hub = TelemetryHub()
    trainer = Trainer(hub)
    trainer.start(config, folder=args.out, run_id=args.out.name)
    last_print = 0.0
    while trainer.active:
        time.sleep(0.2)
        snap = hub.snapshot()
        if time.monotonic() - last_print >= 2.0 and snap.status == "running":
            accuracy = f"{snap.latest_eval.heldout_accuracy:.1%}" if snap.latest_eval else "-"
            print(f"step {snap.step}/{snap.total_steps}  loss {snap.loss.values[-1] if snap.loss.values else 0:.4f}"
                  f"  held-out {accuracy}  {snap.steps_per_second:.1f} steps/s", file=sys.stderr, flush=True)
            last_print = time.monotonic()
    snap = hub.snapshot()
    latest = snap.latest_eval
    result = {
        "status": snap.status, "message": snap.message, "steps": snap.step, "seconds": round(snap.seconds, 2),
        "steps_per_second": round(snap.step / snap.seconds, 2) if snap.seconds else 0.0,
        "accuracy": latest.heldout_accuracy if latest else None,
        "per_class": latest.heldout_per_class if latest else {},
        "prepare_seconds": round(snap.prepare_seconds, 2),
        "setup_seconds": round(snap.setup_seconds, 2),
        "reached": {f"{level:.0%}": _first_reach(snap.evals, level, snap.setup_seconds)
                    for level in (0.9, 0.95, 0.98)},
        "run": str(args.out),
    }
    print(json.dumps(result))
    return 0 if snap.status == "finished" or snap.status == "stopped" else 1


def _claims_from_csv(path: Path) -> Iterator[str]:
    if path.stat().st_size > MAX_CSV_BYTES:
        raise RunError(f"{path} is larger than {MAX_CSV_BYTES // 2**20} MB")
    with open(path, encoding="utf-8", newline="") as file:
        reader = csv.DictReader(file)
        if not reader.fieldnames or "text" not in reader.fieldnames:
            raise RunError(f"{path} has no 'text' column (columns: {', '.join(reader.fieldnames or [])})")
        for row in reader:
            yield row.get("text") or ""


def predict(args: argparse.Namespace) -> int:
    predictor = Predictor.from_run(args.run)
    texts: Iterator[str] = _claims_from_csv(args.csv) if args.csv else (line.rstrip("\n") for line in sys.stdin)
    for text in texts:
        print(json.dumps(predictor.predict(text, with_ablation=False).to_json()), flush=True)
    return 0


def analyze(args: argparse.Namespace) -> int:
    print(json.dumps(analyze_run(args.run), indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return {"train": train, "predict": predict, "analyze": analyze}[args.command](args)
    except (ConfigError, RunError, OSError, UnicodeDecodeError, csv.Error) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
