"""When things happen over a run: the learning rate at each step, the optimizer that applies it, and the steps at
which held-out claims, attention and heads are measured."""

from __future__ import annotations

import math

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
        return torch.optim.AdamW([{"params": matrices, "weight_decay": config.weight_decay},
                                  {"params": rest, "weight_decay": 0.0}], lr=config.lr, betas=(0.9, config.beta2),
                                 foreach=True)
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.9, config.beta2), foreach=True)
    momentum = config.momentum if config.optimizer == "sgd-momentum" else 0.0
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=momentum, foreach=True)


def load_optimizer_code() -> None:
    """A process's first torch optimizer takes ~2.4 s longer to build than later ones (torch imports its compiler
    stack then). Run once per process, in the background, it no longer delays the first press of Train."""
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
