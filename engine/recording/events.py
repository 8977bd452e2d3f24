"""What the training loop reports, as events, and who hears them: an observer is anything with `hear(event)`.
The loop knows nothing of its observers (the live hub, the run's folder, a benchmark, a test); each event is one
frozen record. The measurements themselves are telemetry's records: EvalPoint, OptimPoint, AttentionPoint and
SpecializationPoint are events too."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import torch

from engine.runs.ending import Ending
from engine.telemetry import AttentionPoint, EvalPoint, OptimPoint, ProbeClaim, SpecializationPoint, StepPoint


@dataclass(frozen=True)
class RunStart:
    """The model is built and about to be measured at step 0."""

    probe: tuple[ProbeClaim, ...]  # the claims whose attention is captured
    attention_names: tuple[str, ...]
    n_heads: int
    prepare_seconds: float  # building the claims and the vocabulary
    chance: float  # held-out accuracy of answering the commonest class to every claim
    commonest: str  # that class


@dataclass(frozen=True)
class Weights:
    """A copy of the weights after `step`, which later steps cannot change; `keep`: the run's checkpoint now."""

    step: int
    tensors: Mapping[str, torch.Tensor]
    model_config: dict
    keep: bool


@dataclass(frozen=True)
class Status:
    """Where the run stands; once it ended, how (engine.runs.words says it in words)."""

    status: str  # one of telemetry.STATUSES
    step: int
    seconds: float
    ending: Ending | None = None  # for the ended statuses (telemetry.ENDED_STATUSES)
    setup_seconds: float | None = None  # on the "running" status before step 1: from Train to the first step


@dataclass(frozen=True)
class RunWarning:
    """Files of the run that stopped being written while it trains on: which (engine.runs.ending.FILES), and why
    (engine.runs.ending.error_code)."""

    files: str
    error: str


Event = (
    RunWarning | RunStart | StepPoint | EvalPoint | OptimPoint | AttentionPoint | SpecializationPoint | Weights | Status
)


class Observer(Protocol):
    def hear(self, event: Event) -> None: ...
