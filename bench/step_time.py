"""Time per training step of the default recipe with Adam's fused update (the default) against its multi-tensor
("foreach") update, which the recipe used before.

Run: .venv/bin/python -m bench.step_time [--threads 2] [--rounds 10]
Same claims, seed and starting weights for every variant; rounds of 25 steps alternate between the variants (order
reversed every other round) so the machine's drift hits them all; the first round warms up and is not counted.
Prints median ms per step and the speed ratio against the foreach update.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from engine.dataset import N_CATEGORIES, build_data
from engine.model import ClaimsTransformer, ModelConfig
from engine.presets import preset
from engine.trainer import loss_and_logits, make_optimizer

ROUND_STEPS = 25
VARIANTS = ("earlier: foreach Adam", "default: fused Adam")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = preset("default")
    data = build_data(config.data_seed, config.pool_size, config.heldout_size, config.model.max_len)
    model_config = ModelConfig(**{**config.model.to_dict(), "vocab_size": len(data.tokenizer.vocab),
                                  "n_categories": N_CATEGORIES})
    runs = {}
    for name in VARIANTS:
        torch.manual_seed(config.seed)
        model = ClaimsTransformer(model_config)
        optimizer = (make_optimizer(config, model) if name.startswith("default") else
                     torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.9, config.beta2), foreach=True))
        runs[name] = (model, optimizer, torch.Generator().manual_seed(config.seed))
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    names = list(VARIANTS)
    for round_index in range(args.rounds + 1):
        for name in names if round_index % 2 == 0 else names[::-1]:
            model, optimizer, sampler = runs[name]
            for _ in range(ROUND_STEPS):
                started = time.perf_counter()
                batch = data.train.subset(torch.randint(len(data.train), (config.batch_size,),
                                                        generator=sampler)).trimmed()
                loss, _ = loss_and_logits(model, batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss.item()
                if round_index:
                    times[name].append(time.perf_counter() - started)
    baseline = statistics.median(times[names[0]])
    print(f"default recipe's training step, batch {config.batch_size}, {args.threads} threads, "
          f"{args.rounds} rounds of {ROUND_STEPS} steps per variant")
    for name in names:
        median = statistics.median(times[name])
        print(f"{name:22s} {1000 * median:6.1f} ms/step   speed x{baseline / median:.3f} vs foreach")


if __name__ == "__main__":
    main()
