"""When things happen over a run: the learning rate at each step, the optimizer that applies it, and the steps at
which held-out claims, attention and heads are measured."""

from __future__ import annotations

import bisect
import math
import time
from collections import Counter
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager

import torch

from engine.training.config import TrainConfig

LR_FLOOR = 0.1  # share of the learning rate the cosine schedule ends at
EARLY_EVALUATIONS = (10, 20, 50)  # before the first regular one: the first seconds of a curve are its steepest


def snapshot_steps(total: int, ratio: float = 1.25) -> set[int]:
    """Log-spaced steps (dense early, where specialization emerges) plus the last one."""
    steps, value = {0, total}, 1.0
    while value <= total:
        steps.add(int(value))
        value = max(value * ratio, value + 1)
    return steps


def evaluated(step: int, config: TrainConfig) -> bool:
    """Whether held-out claims are scored at `step`: every eval_every steps, and a few times before the first."""
    return step % config.eval_every == 0 or (step < config.eval_every and step in EARLY_EVALUATIONS)


def specialization_schedule(total: int) -> set[int]:
    """Steps at which heads are ablated: sparser than attention snapshots, since each costs several passes."""
    chosen = [0]
    for step in sorted(snapshot_steps(total)):
        if step >= 10 and step >= 1.4 * chosen[-1]:
            chosen.append(step)
    return {*chosen, total}


def floor_step(config: TrainConfig) -> int:
    """The step at which the cosine schedule reaches its floor, LR_FLOOR x lr, where it stays."""
    return round(config.steps * config.decay_fraction)


def learning_rate(config: TrainConfig, step: int) -> float:
    if config.warmup_steps and step <= config.warmup_steps:
        return config.lr * step / config.warmup_steps
    if config.schedule == "constant":
        return config.lr
    progress = (step - config.warmup_steps) / max(1, floor_step(config) - config.warmup_steps)
    return config.lr * (LR_FLOOR + (1 - LR_FLOOR) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def make_optimizer(config: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    if config.optimizer == "adam" and config.weight_decay:
        matrices = [p for p in model.parameters() if p.dim() >= 2]
        rest = [p for p in model.parameters() if p.dim() < 2]
        return torch.optim.AdamW(
            [{"params": matrices, "weight_decay": config.weight_decay}, {"params": rest, "weight_decay": 0.0}],
            lr=config.lr,
            betas=(0.9, config.beta2),
            foreach=True,
        )
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.9, config.beta2), foreach=True)
    momentum = config.momentum if config.optimizer == "sgd-momentum" else 0.0
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=momentum, foreach=True)


def load_optimizer_code() -> None:
    """A process's first torch optimizer takes ~2.4 s longer to build than later ones (torch imports its compiler
    stack then). Run once per process, in the background, so that cost does not delay the first press of Train."""
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])


class TimeLeft:
    """Seconds a run still needs: its remaining steps at the training steps' own rate, plus every measurement still
    planned (held-out claims, attention, heads, optimizer statistics) at what that kind has cost so far. The run's
    early seconds are mostly measurements, taken densely then: their average rate would say many times too long."""

    def __init__(self, total: int, planned: Mapping[str, Collection[int]]) -> None:
        self.total = total
        self.planned = {kind: sorted(steps) for kind, steps in planned.items()}
        self.spent: Counter[str] = Counter()
        self.taken: Counter[str] = Counter()
        self.step_seconds, self.steps = 0.0, 0

    @classmethod
    def of(cls, config: TrainConfig, attention: Collection[int], heads: Collection[int]) -> TimeLeft:
        """The plan of a run of `config` that captures attention and measures its heads at those steps."""
        steps = range(1, config.steps + 1)
        optim = {1, *range(config.optim_every, config.steps + 1, config.optim_every)} if attention else set()
        return cls(
            config.steps,
            {
                "attention": attention,
                "heads": heads,
                "optimizer": optim,
                "held-out": {s for s in steps if evaluated(s, config)} | {config.steps},
            },
        )

    def add_step(self, seconds: float) -> None:
        self.step_seconds += seconds
        self.steps += 1

    def add(self, kind: str, seconds: float) -> None:
        self.spent[kind] += seconds
        self.taken[kind] += 1

    @contextmanager
    def timing(self, kind: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(kind, time.perf_counter() - started)

    def seconds(self, step: int) -> float | None:
        """After `step`; None before any step was timed."""
        if not self.steps:
            return None
        left = (self.total - step) * self.step_seconds / self.steps
        for kind, steps in self.planned.items():
            if self.taken[kind]:
                left += (len(steps) - bisect.bisect_right(steps, step)) * self.spent[kind] / self.taken[kind]
        return left
