"""Bounded memory: process RSS after 1k steps vs after many more (a tiny, fast model; full telemetry; run saved).

Run: .venv/bin/python -m bench.memory [--steps 100000]
Prints RSS at checkpoints and the growth from step 1,000 to the end (target: at most 50 MB).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from engine.model.transformer import ModelConfig
from engine.telemetry import TelemetryHub
from engine.training.presets import preset
from engine.training.trainer import Trainer


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=100_000)
    args = parser.parse_args()
    config = preset("quick")
    config.steps, config.batch_size, config.eval_every, config.optim_every = args.steps, 8, 100, 10
    config.model = ModelConfig(d_model=16, d_ff=32)
    marks = sorted({1000, args.steps // 10, args.steps // 2, args.steps})
    readings: dict[int, float] = {}
    hub = TelemetryHub()
    trainer = Trainer(hub)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        trainer.start(config, folder=Path(folder) / "run", run_id="run")
        while trainer.active:
            step = hub.snapshot().step
            for mark in marks:
                if step >= mark and mark not in readings:
                    readings[mark] = rss_mb()
                    print(
                        f"step {step:>7}: RSS {readings[mark]:.1f} MB ({time.perf_counter() - started:.0f} s)",
                        flush=True,
                    )
            time.sleep(0.2)
        readings.setdefault(args.steps, rss_mb())
    snap = hub.snapshot()
    assert snap.status == "finished", snap.message
    print(
        f"loss points kept: {len(snap.loss.steps)}, evaluations kept: {len(snap.evals)}, "
        f"attention snapshots kept: {len(snap.attention)}"
    )
    print(
        f"RSS growth from step 1,000 to {args.steps:,}: {readings[args.steps] - readings[1000]:+.1f} MB "
        "(target: at most +50 MB)"
    )


if __name__ == "__main__":
    main()
