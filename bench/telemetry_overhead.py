"""Telemetry overhead: the bare training loop vs the Trainer with full telemetry (per-step loss, optimizer
statistics per head, evaluations, attention snapshots, specialization, run files), same data, seed and steps.

Run: .venv/bin/python -m bench.telemetry_overhead [--steps 600] [--repeats 3] [--threads 1]
Both use the same fixed thread count (the live default measures and switches; that would blur the ratio).
Runs are interleaved (bare, full, bare, full, ...) so drift on a noisy machine hits both; prints medians and the
ratio of median seconds per step. Data preparation is excluded from both.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from engine.dataset import N_CATEGORIES, ClaimData, build_data
from engine.model import ClaimsTransformer, ModelConfig
from engine.presets import preset
from engine.telemetry import TelemetryHub
from engine.trainer import TrainConfig, Trainer, learning_rate, loss_and_logits, make_optimizer


def bare_loop(config: TrainConfig, data: ClaimData) -> float:
    torch.manual_seed(config.seed)
    model_config = ModelConfig(**{**config.model.to_dict(), "vocab_size": len(data.tokenizer.vocab),
                                  "n_categories": N_CATEGORIES})
    model = ClaimsTransformer(model_config)
    optimizer = make_optimizer(config, model)
    sampler = torch.Generator().manual_seed(config.seed)
    started = time.perf_counter()
    for step in range(1, config.steps + 1):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step)
        batch = data.train.subset(torch.randint(len(data.train), (config.batch_size,), generator=sampler)).trimmed()
        loss, _ = loss_and_logits(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss.item()
    return time.perf_counter() - started


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
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    config = preset(args.preset)
    config.steps, config.threads = args.steps, args.threads
    torch.set_num_threads(args.threads)
    data = build_data(config.seed, config.pool_size, config.heldout_size, config.model.max_len)
    bare, full = [], []
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(args.repeats):
            bare.append(bare_loop(config, data))
            full.append(full_telemetry(TrainConfig.from_dict(config.to_dict()), Path(folder) / f"run{repeat}"))
            print(f"repeat {repeat}: bare {bare[-1]:.2f}s, full {full[-1]:.2f}s", flush=True)
    b, f = statistics.median(bare), statistics.median(full)
    print(f"{'loop':<16} | {'median s':>8} | {'ms/step':>7} | {'steps/s':>7}")
    for label, seconds in (("bare", b), ("full telemetry", f)):
        print(f"{label:<16} | {seconds:>8.2f} | {seconds / args.steps * 1000:>7.2f} | {args.steps / seconds:>7.1f}")
    print(f"overhead ratio (full / bare): x{f / b:.3f}")


if __name__ == "__main__":
    main()
