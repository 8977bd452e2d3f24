"""The cost of engine.watch: the same plain PyTorch loop with and without `watch(..., every=10)`, watched with
TensorBoard files too, and beside it the loop logging to TensorBoard's own SummaryWriter (the loss every step, each
parameter's gradient norm every `every` steps), interleaved repeats, median seconds and their ratios to the bare
loop (target: watched <= x1.05), in wall-clock seconds and in this process's CPU seconds (all its threads; time
other processes take from a shared machine is not in them). Two models: an nn.TransformerEncoder (Adam), and a
tiny Hugging Face GPT-2 built from a config (AdamW, sdpa attention, whose weights watch computes again through
eager attention).

Run: .venv/bin/python -m bench.watch_overhead [--model encoder|gpt2|both] [--steps 300] [--repeats 5] [--every 10]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from engine.watch import watch

WIDTH, HEADS, LENGTH, BATCH, VOCAB = 64, 4, 20, 32, 100
WAYS = ("bare", "watched", "watched + TensorBoard files", "SummaryWriter")

# a model, its optimizer, and its loss on the next batch drawn from a generator
Setup = tuple[nn.Module, torch.optim.Optimizer, Callable[[torch.Generator], torch.Tensor]]


def encoder() -> Setup:
    layer = nn.TransformerEncoderLayer(WIDTH, HEADS, dim_feedforward=256, batch_first=True)
    model = nn.Sequential(nn.TransformerEncoder(layer, 2, enable_nested_tensor=False), nn.Linear(WIDTH, 1))

    def loss(data: torch.Generator) -> torch.Tensor:
        x = torch.randn(BATCH, LENGTH, WIDTH, generator=data)
        return (model(x).squeeze(-1).mean(-1) - x[:, :, 0].mean(-1)).pow(2).mean()
    return model, torch.optim.Adam(model.parameters(), lr=1e-3), loss


def gpt2() -> Setup:
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_positions=LENGTH, n_embd=WIDTH, n_layer=2, n_head=HEADS,
                                       bos_token_id=0, eos_token_id=0))
    model.train()

    def loss(data: torch.Generator) -> torch.Tensor:
        tokens = torch.randint(0, VOCAB, (BATCH, LENGTH), generator=data)
        return model(input_ids=tokens, labels=tokens).loss
    return model, torch.optim.AdamW(model.parameters(), lr=1e-3), loss


MODELS = {"encoder": encoder, "gpt2": gpt2}


def loop(model_name: str, way: str, steps: int, folder: Path, every: int) -> tuple[float, float]:
    """Wall-clock and CPU seconds of one training loop."""
    torch.manual_seed(0)
    model, optimizer, next_loss = MODELS[model_name]()
    data = torch.Generator().manual_seed(1)
    summary = SummaryWriter(str(folder / "summary")) if way == "SummaryWriter" else None

    def train(watcher: object | None) -> None:
        for step in range(1, steps + 1):
            loss = next_loss(data)
            loss.backward()
            if summary is not None:
                summary.add_scalar("loss", loss.item(), step)
                if step % every == 0:
                    for name, param in model.named_parameters():
                        summary.add_scalar(f"grad_norm/{name}", param.grad.norm().item(), step)
            optimizer.step()
            optimizer.zero_grad()
            if watcher is not None:
                watcher.step(loss)

    started, cpu = time.perf_counter(), time.process_time()
    if way.startswith("watched"):
        with watch(model, optimizer, folder / "run", every=every, tensorboard=way != "watched") as watcher:
            train(watcher)
    else:
        train(None)
    if summary is not None:
        summary.close()  # its last events reach the disk: part of its cost
    return time.perf_counter() - started, time.process_time() - cpu


def measure(model_name: str, steps: int, repeats: int, every: int) -> None:
    times: dict[str, list[tuple[float, float]]] = {way: [] for way in WAYS}
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(repeats):
            for way in WAYS:
                times[way].append(loop(model_name, way, steps, Path(folder) / f"{way}-{repeat}", every))
            print(f"{model_name} repeat {repeat}: {_ratios({way: t[-1] for way, t in times.items()})}", flush=True)
    medians = {way: (statistics.median(w for w, _ in t), statistics.median(c for _, c in t))
               for way, t in times.items()}
    print(f"{model_name}: {steps} steps, every {every}, {repeats} interleaved repeats, one thread, median: "
          f"{_ratios(medians)}", flush=True)


def _ratios(seconds: dict[str, tuple[float, float]]) -> str:
    """Each way's wall-clock and CPU seconds, and its ratios to the bare loop's."""
    wall, cpu = seconds["bare"]
    return "; ".join(f"{way} {w:.2f} s wall, {c:.2f} s CPU" + ("" if way == "bare" else f" (x{w / wall:.3f} wall, "
                                                                                      f"x{c / cpu:.3f} CPU)")
                     for way, (w, c) in seconds.items())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=[*MODELS, "both"], default="both")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--every", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name in MODELS if args.model == "both" else [args.model]:
        measure(name, args.steps, args.repeats, args.every)


if __name__ == "__main__":
    main()
