"""Telemetry overhead: the bare training loop vs the Trainer with full telemetry (per-step loss, train accuracy,
optimizer statistics per head, attention snapshots, specialization, published weights, run files and
checkpoints), same data, seed and steps, the preset's whole run by default.

The bare loop evaluates the held-out claims at the same cadence with the same function, as any loop that stops at a
target accuracy must; the time it spends there is also reported, so the ratio against a loop that never evaluates
is printed too.

Run: .venv/bin/python -m bench.telemetry_overhead [--steps N] [--repeats 3] [--threads 1]   (~20 min for default)
Both use the same fixed thread count (the live default measures and switches; that would blur the ratio).
Runs are interleaved (bare, full, bare, full, ...) so drift on a noisy machine hits both; prints medians and the
ratios of median seconds. Data preparation is excluded from both.
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
from engine.trainer import TrainConfig, Trainer, evaluate, learning_rate, loss_and_logits, make_optimizer


def bare_loop(config: TrainConfig, data: ClaimData) -> tuple[float, float]:
    """(seconds in all, seconds of them spent evaluating held-out claims)"""
    torch.manual_seed(config.seed)
    model_config = ModelConfig(**{**config.model.to_dict(), "vocab_size": len(data.tokenizer.vocab),
                                  "n_categories": N_CATEGORIES})
    model = ClaimsTransformer(model_config)
    optimizer = make_optimizer(config, model)
    sampler = torch.Generator().manual_seed(config.seed)
    evaluating = 0.0
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
        if step % config.eval_every == 0 or step == config.steps:
            evaluation_started = time.perf_counter()
            evaluate(model, data.heldout)
            evaluating += time.perf_counter() - evaluation_started
    return time.perf_counter() - started, evaluating


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
    torch.set_num_threads(args.threads)
    data = build_data(config.data_seed, config.pool_size, config.heldout_size, config.model.max_len)
    bare, evaluating, full = [], [], []
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(args.repeats):
            seconds, evaluation = bare_loop(config, data)
            bare.append(seconds)
            evaluating.append(evaluation)
            full.append(full_telemetry(TrainConfig.from_dict(config.to_dict()), Path(folder) / f"run{repeat}"))
            print(f"repeat {repeat}: bare {bare[-1]:.2f}s (evaluating {evaluation:.2f}s), full {full[-1]:.2f}s, "
                  f"ratio x{full[-1] / bare[-1]:.3f}", flush=True)
    b, e, f = statistics.median(bare), statistics.median(evaluating), statistics.median(full)
    print(f"{args.preset}, {config.steps} steps, {args.threads} thread(s), {args.repeats} interleaved repeats")
    print(f"{'loop':<34} | {'median s':>8} | {'ms/step':>7} | {'steps/s':>7}")
    rows = ((f"bare, held-out every {config.eval_every} steps", b), ("bare, never evaluating", b - e),
            ("full telemetry", f))
    for label, seconds in rows:
        print(f"{label:<34} | {seconds:>8.2f} | {seconds / config.steps * 1000:>7.2f} | {config.steps / seconds:>7.1f}")
    print(f"overhead ratio (full / bare with evaluation): x{f / b:.3f}")
    print(f"overhead ratio (full / bare never evaluating): x{f / (b - e):.3f}")


if __name__ == "__main__":
    main()
