"""The cost of engine.watch: the same plain PyTorch loop (an nn.TransformerEncoder, Adam) with and without
`watch(..., every=10)`, and watched with TensorBoard files too, interleaved repeats, median seconds and their ratios
(target <= x1.05).

Run: .venv/bin/python -m bench.watch_overhead [--steps 300] [--repeats 5] [--every 10]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from engine.watch import watch

WIDTH, HEADS, LENGTH, BATCH = 64, 4, 20, 32


def loop(steps: int, out: Path | None, every: int, tensorboard: bool = False) -> float:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(WIDTH, HEADS, dim_feedforward=256, batch_first=True)
    model = nn.Sequential(nn.TransformerEncoder(layer, 2, enable_nested_tensor=False), nn.Linear(WIDTH, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    data = torch.Generator().manual_seed(1)

    def train(watcher: object | None) -> None:
        for _ in range(steps):
            x = torch.randn(BATCH, LENGTH, WIDTH, generator=data)
            loss = (model(x).squeeze(-1).mean(-1) - x[:, :, 0].mean(-1)).pow(2).mean()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            if watcher is not None:
                watcher.step(loss)

    started = time.perf_counter()
    if out is None:
        train(None)
    else:
        with watch(model, optimizer, out, every=every, tensorboard=tensorboard) as watcher:
            train(watcher)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--every", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    plain, watched, tensorboard = [], [], []
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(args.repeats):
            plain.append(loop(args.steps, None, args.every))
            watched.append(loop(args.steps, Path(folder) / f"run{repeat}", args.every))
            tensorboard.append(loop(args.steps, Path(folder) / f"tensorboard{repeat}", args.every, tensorboard=True))
            print(f"repeat {repeat}: plain {plain[-1]:.2f} s, watched {watched[-1]:.2f} s "
                  f"(x{watched[-1] / plain[-1]:.3f}), with TensorBoard {tensorboard[-1]:.2f} s "
                  f"(x{tensorboard[-1] / plain[-1]:.3f})", flush=True)
    p, w, t = (statistics.median(times) for times in (plain, watched, tensorboard))
    print(f"{args.steps} steps, every {args.every}, {args.repeats} interleaved repeats, one thread: "
          f"median plain {p:.2f} s, watched {w:.2f} s (x{w / p:.3f}), with TensorBoard files {t:.2f} s (x{t / p:.3f})")

if __name__ == "__main__":
    main()
