"""Thread-safe shared state between the training thread and any number of readers.

The trainer writes plain data under a lock; readers call `snapshot()` and get an immutable `Snapshot`
(frozen dataclasses, tuples, read-only arrays) that no later write can tear. Every history is bounded,
whatever the run length: the loss curve is averaged down as it grows and periodic histories are thinned.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import numpy as np

STATUSES = ("idle", "preparing", "running", "paused", "finished", "stopped", "failed", "diverged")
ACTIVE_STATUSES = ("preparing", "running", "paused")
ENDED_STATUSES = ("finished", "stopped", "failed", "diverged")


def at_most_chance(accuracy: float, chance: float) -> bool:
    """Whether a held-out accuracy is no better than answering one class to every claim. The accuracy is computed in
    float32 (99 of 200 right reads 0.49500000477), the chance from exact counts."""
    return accuracy <= chance + 1e-6


@dataclass(frozen=True)
class Series:
    steps: tuple[int, ...] = ()
    values: tuple[float, ...] = ()


@dataclass(frozen=True)
class StepPoint:
    step: int
    loss: float
    seconds: float  # training seconds so far, pauses left out
    steps_per_second: float = 0.0  # not saved: a saved run's rate is its steps over its seconds
    seconds_left: float | None = None  # not saved: engine.training.schedule.TimeLeft, while it trains


@dataclass(frozen=True)
class MetricsPoint:
    """Numbers a watched training loop reports beside its loss (engine.recording.watch: `watcher.step(loss,
    metrics=...)`)."""

    step: int
    values: dict[str, float]


@dataclass(frozen=True)
class EvalPoint:
    step: int
    seconds: float
    train_loss: float
    heldout_loss: float
    train_accuracy: float
    heldout_accuracy: float
    train_per_class: dict[str, float]
    heldout_per_class: dict[str, float]


@dataclass(frozen=True)
class OptimStats:
    """One head's (or parameter group's) slice of the optimizer at a step."""

    grad_norm: float
    step_norm: float  # L2 norm of the update actually applied
    mean_abs_step: float  # mean |update|; for Adam the bias-corrected lr * m_hat / (sqrt(v_hat) + eps)
    mean_abs_m: float | None = None  # Adam's first moment ("which direction am I usually going")
    mean_sqrt_v: float | None = None  # Adam's second moment ("how big are my mistakes usually")


# OptimStats' per-head measures: field -> (what it is, in the seed story's words; its symbol), for every page, table
# and file that names one
OPTIM_MEASURES = {
    "mean_abs_m": ("momentum", "mean |m|"),
    "mean_sqrt_v": ("adaptive scale", "mean √v"),
    "mean_abs_step": ("effective step", "mean |step|"),
    "grad_norm": ("gradient", "gradient norm"),
}


@dataclass(frozen=True)
class OptimPoint:
    step: int
    heads: dict[str, tuple[OptimStats, ...]]  # attention name -> one entry per head
    groups: dict[str, OptimStats]  # parameter group name -> stats


@dataclass(frozen=True)
class AttentionPoint:
    step: int
    weights: dict[str, np.ndarray]  # attention name -> (N probe claims, H, Tq, Tk), read-only
    # a watched run given a tokenizer: each example's tokens (the model's input, up to WATCHED_POSITIONS of them)
    tokens: tuple[tuple[str, ...], ...] = ()
    tokens_unread: str | None = None  # why the tokens saved with these weights cannot be shown


RESAMPLED = "resampled"  # each head in turn sees what it saw on claims of the same class (engine.interpret.attribution)
# How a head was taken away, in the words every page uses, by what each saved record says: runs saved before
# resampling gave a head its average output (their records have `answers`), and before that zeroed it
INTERVENTIONS = {
    RESAMPLED: "sees what it saw on claims of the same kind",
    "mean": "gives its average output",
    "zeroed": "is switched off",
}


@dataclass(frozen=True)
class HeadSpecialization:
    """One head at one step. Its name (`kind`, `reason`, `owns`) comes from the causal measurements in
    engine.interpret.attribution and the rule in engine.interpret.ownership; `intervention` says how its ablation
    numbers took it away (runs saved before twins were measured have no necessity, and labels from zeroing)."""

    shares: dict[str, float]  # field category -> share of attention from the reason position
    entropy: float  # nats, mean over claims
    confidence: float  # mean max attention weight (Voita et al. 2019)
    importance: float  # |dL/dg|, g scaling the head's output (Michel et al. 2019)
    ablation: dict[str, float]  # class -> accuracy drop when this head is taken away (`intervention`)
    # ADMIN's kind (sex, age, specialty, place) -> accuracy drop on ADMIN claims of that kind, ablated as above;
    # ADMIN is four different checks, which heads can split. Empty when the claims' kinds are unknown.
    admin_kinds: dict[str, float] = field(default_factory=dict)
    necessity: dict[str, float] = field(default_factory=dict)  # check -> share of its evidence that goes when patched
    sufficiency: dict[str, float] = field(default_factory=dict)  # check -> share it brings alone
    answers: dict[str, dict[str, float]] = field(default_factory=dict)  # ablated: true class -> share per answer
    direct: dict[str, float] = field(default_factory=dict)  # check -> direct logit attribution on its invalid twins
    owns: str | None = None  # the reason this head is the specialist of
    kind: str = ""  # a kind of engine.interpret.ownership (engine.interpret.labels words it)
    reason: str | None = None  # the reason, ADMIN family or checks the kind names (for NEEDED: the classes)
    rivals: tuple[int, ...] = ()  # the other heads that pass the specialist test for the same reason
    # with each other head (its index, as text): necessity per check patched together, accuracy drop per class
    # resampled together (engine.interpret.attribution); empty in runs saved before pairs were measured
    pair_necessity: dict[str, dict[str, float]] = field(default_factory=dict)
    pair_ablation: dict[str, dict[str, float]] = field(default_factory=dict)
    selectivity: float | None = None  # engine.interpret.ownership.selectivity; None for encoder heads and older runs
    shared_with: dict[str, tuple[int, ...]] = field(default_factory=dict)  # reason or ADMIN family -> the other
    # heads that carry it with this one, each able to stand in for the other (engine.interpret.ownership)
    intervention: str = RESAMPLED  # how `ablation` took the head away: a key of INTERVENTIONS


@dataclass(frozen=True)
class SpecializationPoint:
    step: int
    heads: dict[str, tuple[HeadSpecialization, ...]]  # attention name -> one entry per head


@dataclass(frozen=True)
class ProbeClaim:
    text: str
    label: str  # one of data.rules.CLASSES
    tokens: tuple[str, ...]  # display text per token
    categories: tuple[str, ...]


@dataclass(frozen=True)
class Snapshot:
    run_id: str | None = None
    run_dir: str | None = None
    status: str = "idle"
    message: str = ""
    step: int = 0
    total_steps: int = 0
    seconds: float = 0.0
    steps_per_second: float = 0.0
    eta_seconds: float | None = None
    config: Mapping[str, Any] = field(default_factory=dict)  # read-only (frozen) in every snapshot pages get
    loss: Series = Series()
    evals: tuple[EvalPoint, ...] = ()
    optim: tuple[OptimPoint, ...] = ()
    attention: tuple[AttentionPoint, ...] = ()
    specialization: tuple[SpecializationPoint, ...] = ()
    metrics: tuple[MetricsPoint, ...] = ()  # a watched run's own numbers
    probe: tuple[ProbeClaim, ...] = ()
    attention_names: tuple[str, ...] = ()
    n_heads: int = 4
    prepare_seconds: float = 0.0  # generating and tokenizing the claims, before step 1
    setup_seconds: float = 0.0  # from Train to step 1: preparing the claims, the model and the first measurement
    warning: str = ""  # a problem that does not stop training, e.g. the run can no longer be saved
    read_only: bool = False  # a saved run reopened for replay
    # share of held-out claims of the commonest class: what answering that to every claim scores
    chance: float | None = None
    commonest: str | None = None  # that class (unknown in runs saved before it was recorded)
    began: float | None = None  # when Train was pressed (time.time()); not saved

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    def first_reaching(self, accuracy: float) -> EvalPoint | None:
        """The first evaluation whose held-out accuracy reached `accuracy`."""
        return next((e for e in self.evals if e.heldout_accuracy >= accuracy), None)

    @property
    def no_better_than_chance(self) -> bool:
        """An ended run whose last held-out accuracy is no better than answering one class to every claim."""
        return (
            self.status in ("finished", "stopped")
            and self.chance is not None
            and bool(self.evals)
            and at_most_chance(self.evals[-1].heldout_accuracy, self.chance)
        )

    @property
    def latest_eval(self) -> EvalPoint | None:
        return self.evals[-1] if self.evals else None


class Downsampler:
    """Keeps at most `capacity` (step, value) points by averaging neighbours as the series grows."""

    def __init__(self, capacity: int = 2000) -> None:
        self.capacity = capacity
        self.stride = 1
        self.steps: list[int] = []
        self.values: list[float] = []
        self._pending: list[tuple[int, float]] = []

    def append(self, step: int, value: float) -> None:
        self._pending.append((step, value))
        if len(self._pending) < self.stride:
            return
        self.steps.append(self._pending[-1][0])
        self.values.append(sum(v for _, v in self._pending) / len(self._pending))
        self._pending.clear()
        if len(self.steps) >= self.capacity:
            self.steps = self.steps[1::2]
            self.values = [(a + b) / 2 for a, b in zip(self.values[0::2], self.values[1::2], strict=False)]
            self.stride *= 2

    def series(self) -> Series:
        steps, values = list(self.steps), list(self.values)
        if self._pending:
            steps.append(self._pending[-1][0])
            values.append(sum(v for _, v in self._pending) / len(self._pending))
        return Series(tuple(steps), tuple(values))


def thin(points: list, capacity: int) -> list:
    """Halve a periodic history (keep every other point, always the newest) once it reaches capacity."""
    if len(points) < capacity:
        return points
    kept = points[::2]
    if kept[-1] is not points[-1]:
        kept.append(points[-1])
    return kept


def frozen(settings: Mapping[str, Any]) -> Mapping[str, Any]:
    """A read-only copy of settings (nested settings too): one snapshot's config is read by every viewer."""
    return MappingProxyType({k: frozen(v) if isinstance(v, Mapping) else v for k, v in settings.items()})


def read_only(array: np.ndarray) -> np.ndarray:
    array = np.array(array, copy=True)
    array.setflags(write=False)
    return array


class TelemetryHub:
    """The one writer (the training thread) and many readers (pages) meet here."""

    HISTORY_CAPACITY = 1000
    ATTENTION_CAPACITY = 80

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clear()

    def _clear(self) -> None:
        self._base = Snapshot()
        self._loss = Downsampler()
        self._evals: list[EvalPoint] = []
        self._optim: list[OptimPoint] = []
        self._attention: list[AttentionPoint] = []
        self._specialization: list[SpecializationPoint] = []
        self._cached: Snapshot | None = None

    def _touch(self) -> None:
        self._cached = None

    def begin(self, run_id: str | None, run_dir: str | None, config: dict, total_steps: int) -> None:
        with self._lock:
            self._clear()
            self._base = Snapshot(
                run_id=run_id,
                run_dir=run_dir,
                status="preparing",
                message="Preparing data and model",
                config=frozen(config),
                total_steps=total_steps,
                began=time.time(),
            )
            self._touch()

    def reset(self) -> None:
        with self._lock:
            self._clear()
            self._touch()

    def describe(
        self,
        probe: tuple[ProbeClaim, ...],
        attention_names: tuple[str, ...],
        n_heads: int,
        prepare_seconds: float,
        chance: float | None = None,
        commonest: str | None = None,
    ) -> None:
        with self._lock:
            self._base = replace(
                self._base,
                probe=probe,
                attention_names=attention_names,
                n_heads=n_heads,
                prepare_seconds=prepare_seconds,
                chance=chance,
                commonest=commonest,
            )
            self._touch()

    def record_setup(self, seconds: float) -> None:
        with self._lock:
            self._base = replace(self._base, setup_seconds=seconds)
            self._touch()

    def set_status(self, status: str, message: str = "") -> None:
        assert status in STATUSES, status
        with self._lock:
            self._base = replace(self._base, status=status, message=message)
            self._touch()

    def set_warning(self, warning: str) -> None:
        with self._lock:
            self._base = replace(self._base, warning=warning)
            self._touch()

    def set_unsaved(self, warning: str) -> None:
        """The run trains on without a folder (it could not be created): no page may offer to open it."""
        with self._lock:
            self._base = replace(self._base, run_dir=None, warning=warning)
            self._touch()

    def record_step(
        self, step: int, loss: float, seconds: float, steps_per_second: float, seconds_left: float | None
    ) -> None:
        with self._lock:
            self._loss.append(step, loss)
            self._base = replace(
                self._base, step=step, seconds=seconds, steps_per_second=steps_per_second, eta_seconds=seconds_left
            )
            self._touch()

    def record_eval(self, point: EvalPoint) -> None:
        with self._lock:
            self._evals = thin([*self._evals, point], self.HISTORY_CAPACITY)
            self._touch()

    def record_optim(self, point: OptimPoint) -> None:
        with self._lock:
            self._optim = thin([*self._optim, point], self.HISTORY_CAPACITY)
            self._touch()

    def record_attention(self, point: AttentionPoint) -> None:
        frozen = replace(point, weights={name: read_only(w) for name, w in point.weights.items()})
        with self._lock:
            self._attention = thin([*self._attention, frozen], self.ATTENTION_CAPACITY)
            self._touch()

    def record_specialization(self, point: SpecializationPoint) -> None:
        with self._lock:
            self._specialization = thin([*self._specialization, point], self.ATTENTION_CAPACITY)
            self._touch()

    def snapshot(self) -> Snapshot:
        with self._lock:
            if self._cached is None:
                self._cached = replace(
                    self._base,
                    loss=self._loss.series(),
                    evals=tuple(self._evals),
                    optim=tuple(self._optim),
                    attention=tuple(self._attention),
                    specialization=tuple(self._specialization),
                )
            return self._cached
