"""Telemetry overhead: the training loop bare (engine.training.loop.TrainingLoop with measure=False and no observers:
forward, backward, update, and the held-out evaluations a stop at a target accuracy needs) vs the Trainer with full
telemetry (per-step loss, train accuracy, optimizer statistics per head, attention snapshots, specialization,
published weights, run files and checkpoints), same data, seed and steps, the preset's whole run by default.

Run: .venv/bin/python -m bench.telemetry_overhead [--steps N] [--repeats 3] [--threads 1]   (~20 min for default)
Both use the same fixed thread count. Runs are interleaved (bare, full, bare, full, ...) so drift on a noisy machine
hits both; prints medians and the ratio of median seconds. Data preparation is excluded from both.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from engine.task.claims_model import sized_for_claims
from engine.task.dataset import ClaimData, build_data
from engine.telemetry import TelemetryHub
from engine.training.config import TrainConfig
from engine.training.loop import TrainingLoop
from engine.training.presets import preset
from engine.training.threads import THREADS
from engine.training.trainer import Trainer


def bare_loop(config: TrainConfig, data: ClaimData) -> float:
    """Training seconds (as the Trainer counts them), the real loop with nothing measured beyond held-out claims."""
    config = replace(config, model=sized_for_claims(config.model, data.tokenizer))
    with THREADS.lease(config.threads) as threads:
        loop = TrainingLoop(config, data, [], threads, measure=False)
        ending = loop.run(time.perf_counter())
    assert ending.status == "finished", ending.ending
    return ending.seconds


def full_telemetry(config: TrainConfig, folder: Path) -> float:
    hub = TelemetryHub()
    trainer = Trainer(hub)
    trainer.start(config, folder=folder, run_id=folder.name)
    while trainer.active:
        time.sleep(0.05)
    snapshot = hub.snapshot()
    assert snapshot.status == "finished", snapshot.message
    return snapshot.seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="default")
    parser.add_argument("--steps", type=int, default=0, help="0: the preset's own number of steps")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    config = preset(args.preset)
    config.steps, config.threads = args.steps or config.steps, args.threads
    data = build_data(config.data_seed, config.pool_size, config.heldout_size, config.model.max_len)
    bare, full = [], []
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(args.repeats):
            bare.append(bare_loop(config, data))
            full.append(full_telemetry(TrainConfig.from_dict(config.to_dict()), Path(folder) / f"run{repeat}"))
            print(
                f"repeat {repeat}: bare {bare[-1]:.2f}s, full {full[-1]:.2f}s, ratio x{full[-1] / bare[-1]:.3f}",
                flush=True,
            )
    b, f = statistics.median(bare), statistics.median(full)
    print(f"{args.preset}, {config.steps} steps, {args.threads} thread(s), {args.repeats} interleaved repeats")
    print(f"{'loop':<34} | {'median s':>8} | {'ms/step':>7} | {'steps/s':>7}")
    rows = ((f"bare, held-out every {config.eval_every} steps", b), ("full telemetry", f))
    for label, seconds in rows:
        print(f"{label:<34} | {seconds:>8.2f} | {seconds / config.steps * 1000:>7.2f} | {config.steps / seconds:>7.1f}")
    print(f"overhead ratio (full / bare): x{f / b:.3f}")


if __name__ == "__main__":
    main()
