"""The cost of engine.recording.watch: the same plain PyTorch loop with and without `watch(..., every=10)`, watched with
TensorBoard files too, and beside it the loop logging to TensorBoard's own SummaryWriter (the loss every step, each
parameter's gradient norm every `every` steps), interleaved repeats (in turn forwards and backwards), median seconds
and their ratios to the bare loop (target: watched <= x1.05), in wall-clock seconds and in this process's CPU
seconds (all its threads; time other processes take from a shared machine is not in them). Two models: an
nn.TransformerEncoder (Adam), and a tiny Hugging Face GPT-2 built from a config (AdamW, sdpa attention, whose weights
watch computes again through eager attention). The machine's load (1-minute average) is said before and after: on a
shared machine, the other processes' work changes every number here.

Run: .venv/bin/python -m bench.watch_overhead [--model encoder|gpt2|both] [--steps 300] [--repeats 5] [--every 10]
     [--ways bare,watched]   (the bare loop is always measured: the ratios are to it)
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from engine.recording.watch import Watcher, watch

WIDTH, HEADS, LENGTH, BATCH, VOCAB = 64, 4, 20, 32, 100
WAYS = ("bare", "watched", "watched + TensorBoard files", "SummaryWriter")
# watch's own work, by part: the Watcher methods that do it (none calls another), timed apart from the loop's
PARTS = {
    "start and end": ("__init__", "close"),
    "optimizer statistics": ("_before_update", "_after_update"),
    "attention": ("_weights",),
    "steps (loss, records, status)": ("step",),
}

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

    model = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=VOCAB, n_positions=LENGTH, n_embd=WIDTH, n_layer=2, n_head=HEADS, bos_token_id=0, eos_token_id=0
        )
    )
    model.train()

    def loss(data: torch.Generator) -> torch.Tensor:
        tokens = torch.randint(0, VOCAB, (BATCH, LENGTH), generator=data)
        return model(input_ids=tokens, labels=tokens).loss

    return model, torch.optim.AdamW(model.parameters(), lr=1e-3), loss


MODELS = {"encoder": encoder, "gpt2": gpt2}


def loop(
    model_name: str, way: str, steps: int, folder: Path, every: int, parts: Counter | None = None
) -> tuple[float, float]:
    """Wall-clock and CPU seconds of one training loop; `parts`, when given, adds up the CPU seconds of watch's own
    work in it, by part."""
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
        with (
            _timing(parts),
            watch(model, optimizer, folder / "run", every=every, tensorboard=way != "watched") as watcher,
        ):
            train(watcher)
    else:
        train(None)
    if summary is not None:
        summary.close()  # its last events reach the disk: part of its cost
    return time.perf_counter() - started, time.process_time() - cpu


@contextlib.contextmanager
def _timing(parts: Counter | None) -> Iterator[None]:
    """While it lasts, each of PARTS' methods adds its CPU seconds to `parts` (about a microsecond a call)."""
    if parts is None:
        yield
        return
    originals = {name: getattr(Watcher, name) for names in PARTS.values() for name in names}

    def timed(part: str, method: Callable) -> Callable:
        @functools.wraps(method)
        def measured(*args: object, **kwargs: object) -> object:
            started = time.process_time()
            try:
                return method(*args, **kwargs)
            finally:
                parts[part] += time.process_time() - started

        return measured

    for part, names in PARTS.items():
        for name in names:
            setattr(Watcher, name, timed(part, originals[name]))
    try:
        yield
    finally:
        for name, method in originals.items():
            setattr(Watcher, name, method)


def measure(model_name: str, steps: int, repeats: int, every: int, ways: list[str]) -> None:
    times: dict[str, list[tuple[float, float]]] = {way: [] for way in ways}
    parts: Counter = Counter()  # watch's own CPU seconds in the "watched" loops, by part
    print(f"{model_name}: machine load before {_load()}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        # unmeasured: the first loop of a model pays for importing its code (transformers' GPT-2: about a second)
        loop(model_name, "watched", 2, Path(folder) / "warm-up", every)
        for repeat in range(repeats):
            for way in ways if repeat % 2 == 0 else ways[::-1]:  # neither goes first always: the machine drifts
                times[way].append(
                    loop(
                        model_name,
                        way,
                        steps,
                        Path(folder) / f"{way}-{repeat}",
                        every,
                        parts if way == "watched" else None,
                    )
                )
            print(f"{model_name} repeat {repeat}: {_ratios({way: t[-1] for way, t in times.items()})}", flush=True)
    medians = {
        way: (statistics.median(w for w, _ in t), statistics.median(c for _, c in t)) for way, t in times.items()
    }
    print(
        f"{model_name}: {steps} steps, every {every}, {repeats} interleaved repeats, one thread, machine load "
        f"after {_load()}, median: {_ratios(medians)}",
        flush=True,
    )
    if "watched" in ways:
        print(f"{model_name}: {_own_work(parts, repeats, medians['bare'][1])}", flush=True)
        with tempfile.TemporaryDirectory() as folder:
            turns = [lockstep(model_name, steps, every, Path(folder) / str(repeat)) for repeat in range(repeats)]
        ratios = sorted(t["watched"] / t["bare"] for t in turns)
        print(
            f"{model_name}: in lockstep ({steps} steps of each in turn, {repeats} repeats, machine load after "
            f"{_load()}): watched steps x{statistics.median(ratios):.3f} CPU of bare ones (repeats "
            f"{', '.join(f'x{r:.3f}' for r in ratios)})",
            flush=True,
        )


def lockstep(model_name: str, steps: int, every: int, folder: Path) -> dict[str, float]:
    """CPU seconds of a bare and a watched loop trained in turn, a step of each (which goes first alternating), in one
    process: whatever the machine's other work takes from one step takes about as much from the other, so their
    ratio is watch's cost per step, hooks and all, far less disturbed than two loops' totals (its start and end are
    not in it: see _own_work)."""
    loops = {}
    for way in ("bare", "watched"):
        torch.manual_seed(0)
        loops[way] = (*MODELS[model_name](), torch.Generator().manual_seed(1))
    spent = dict.fromkeys(loops, 0.0)
    model, optimizer = loops["watched"][:2]
    with watch(model, optimizer, folder / "lockstep", every=every) as watcher:
        for step in range(steps):
            for way in ("bare", "watched") if step % 2 == 0 else ("watched", "bare"):
                _, optimizer, next_loss, data = loops[way]
                started = time.process_time()
                loss = next_loss(data)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                if way == "watched":
                    watcher.step(loss)
                spent[way] += time.process_time() - started
    return spent


def _own_work(parts: Counter, repeats: int, bare_cpu: float) -> str:
    """watch's own CPU seconds a loop, by part, and in all as a share of the bare loop's median CPU seconds: its
    cost measured apart from the model's, whose time a shared machine makes vary far more."""
    each = {part: seconds / repeats for part, seconds in parts.items()}
    shown = ", ".join(f"{part} {seconds:.3f} s" for part, seconds in each.items())
    return (
        f"watch's own work a watched loop: {sum(each.values()):.3f} s CPU (x{1 + sum(each.values()) / bare_cpu:.3f}"
        f" of the bare loop's median): {shown}"
    )


def _load() -> str:
    """The machine's 1-minute load average and its CPU count: how busy the machine measured on was."""
    return f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"


def _ratios(seconds: dict[str, tuple[float, float]]) -> str:
    """Each way's wall-clock and CPU seconds, and its ratios to the bare loop's."""
    wall, cpu = seconds["bare"]
    return "; ".join(
        f"{way} {w:.2f} s wall, {c:.2f} s CPU"
        + ("" if way == "bare" else f" (x{w / wall:.3f} wall, x{c / cpu:.3f} CPU)")
        for way, (w, c) in seconds.items()
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=[*MODELS, "both"], default="both")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--ways", default=",".join(WAYS), help=f"which of {', '.join(WAYS)}, comma-separated")
    args = parser.parse_args()
    ways = ["bare", *(way for way in args.ways.split(",") if way != "bare")]
    if unknown := set(ways) - set(WAYS):
        parser.error(f"unknown ways: {', '.join(sorted(unknown))} (known: {', '.join(WAYS)})")
    torch.set_num_threads(1)
    for name in MODELS if args.model == "both" else [args.model]:
        measure(name, args.steps, args.repeats, args.every, ways)


if __name__ == "__main__":
    main()
