"""The training loop: forward, backward, update, for config.steps steps, reporting what it does and measures to
its observers as events (engine.recording.events). It runs in whatever thread calls it and knows nothing of the UI."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from engine.interpret.attribution import reference_claims
from engine.interpret.metrics import commonest_class, optimizer_stats, per_class_accuracy
from engine.interpret.pairs import run_pairs
from engine.interpret.specialization import capture_probe, specialization
from engine.recording.events import Event, Observer, RunStart, Status, Weights
from engine.runs.ending import ENDED_BY, Ending
from engine.task.claims_model import TARGET_VOCAB, ClaimsTransformer, targets_for_classes, teacher_forced_outcomes
from engine.task.dataset import N_CATEGORIES, ClaimData, ClaimTensors
from engine.telemetry import EvalPoint, StepPoint
from engine.training.config import TrainConfig
from engine.training.schedule import (
    TimeLeft,
    evaluated,
    learning_rate,
    make_optimizer,
    snapshot_steps,
    specialization_schedule,
)
from engine.training.threads import ThreadLease

CHECKPOINT_SECONDS = 15.0
# Forward passes over a few hundred claims at a time: larger ones cost more per claim on CPU (tensor copies)
EVAL_CHUNK = 250


def cpu_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the weights that later steps cannot change."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def even_class_weights(classes: torch.Tensor) -> torch.Tensor:
    """A weight per claim such that every class present in `classes` (N,) is drawn equally often."""
    counts = torch.bincount(classes).double()  # (C,)
    return (1.0 / counts)[classes]  # (N,)


def loss_and_logits(model: ClaimsTransformer, batch: ClaimTensors) -> tuple[torch.Tensor, torch.Tensor]:
    inputs, labels = targets_for_classes(batch.classes)
    logits = model(batch.tokens, batch.categories, inputs)  # (B, 3, V)
    return F.cross_entropy(logits.reshape(-1, len(TARGET_VOCAB)), labels.reshape(-1)), logits


@torch.no_grad()
def evaluate(model: ClaimsTransformer, data: ClaimTensors) -> tuple[float, float, dict[str, float]]:
    """(loss, exact-match accuracy of greedy decoding, accuracy per true class) on a set of claims."""
    was_training = model.training
    model.eval()
    chunks = [
        loss_and_logits(model, data.subset(slice(i, i + EVAL_CHUNK)).trimmed()) for i in range(0, len(data), EVAL_CHUNK)
    ]
    model.train(was_training)
    loss = sum(float(chunk_loss) * len(logits) for chunk_loss, logits in chunks) / max(len(data), 1)
    logits = torch.cat([logits for _, logits in chunks])
    accuracy, per_class = per_class_accuracy(teacher_forced_outcomes(logits), data.classes)
    return loss, accuracy, per_class


class RunControl:
    """Pause, resume and stop: asked from any thread, heeded by the loop between steps."""

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self.running = threading.Event()  # cleared while paused
        self.running.set()

    def pause(self) -> None:
        self.running.clear()

    def resume(self) -> None:
        self.running.set()

    def stop(self) -> None:
        self.stopping.set()
        self.running.set()


class Clock:
    """Training seconds with pauses left out, and steps per second over about the last second."""

    def __init__(self) -> None:
        self.started = self.window_start = time.perf_counter()
        self.paused, self.window_step, self.rate = 0.0, 0, 0.0

    def exclude(self, paused: float) -> None:
        self.paused += paused
        self.window_start += paused

    def tick(self, step: int) -> tuple[float, float]:
        now = time.perf_counter()
        seconds = now - self.started - self.paused
        if now - self.window_start >= 1.0:
            self.rate = (step - self.window_step) / (now - self.window_start)
            self.window_start, self.window_step = now, step
        elif self.rate == 0.0 and seconds > 0:
            self.rate = step / seconds
        return seconds, self.rate


class RecentBatches:
    """Loss and greedy predictions of the training batches since the last evaluation: train accuracy for free."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.predicted: list[torch.Tensor] = []
        self.truth: list[torch.Tensor] = []

    @property
    def empty(self) -> bool:
        return not self.losses

    def add(self, loss: float, predicted: torch.Tensor, truth: torch.Tensor) -> None:
        self.losses.append(loss)
        self.predicted.append(predicted)
        self.truth.append(truth)

    def summary(self) -> tuple[float, tuple[float, dict[str, float]]]:
        loss = sum(self.losses) / len(self.losses)
        accuracy = per_class_accuracy(torch.cat(self.predicted), torch.cat(self.truth))
        self.__init__()
        return loss, accuracy


class TrainingLoop:
    """One run of `config` on `data`. `measure=False` leaves out everything but the held-out evaluations that a stop
    at a target accuracy needs (the bare loop, as a benchmark times it)."""

    def __init__(
        self,
        config: TrainConfig,
        data: ClaimData,
        observers: Sequence[Observer],
        threads: ThreadLease,
        control: RunControl | None = None,
        measure: bool = True,
        device: torch.device | None = None,
    ) -> None:
        self.config, self.data, self.observers, self.threads = config, data, list(observers), threads
        self.control, self.measure = control or RunControl(), measure
        device = device or torch.device("cpu")
        torch.manual_seed(config.seed)
        self.model = ClaimsTransformer(config.model).to(device)
        self.optimizer = make_optimizer(config, self.model)
        self.sampler = torch.Generator().manual_seed(config.seed)
        self.train_set, self.heldout, self.probe = (part.to(device) for part in (data.train, data.heldout, data.probe))
        self.draw_weights = even_class_weights(data.train.classes) if config.reason_balance == "even" else None
        self.pairs = run_pairs(data.tokenizer, config.model.max_len, device) if measure else None
        self.reference = reference_claims(data.tokenizer, config.model.max_len, device) if measure else None
        self.attention_steps = snapshot_steps(config.steps) if measure else set()
        self.specialization_steps = specialization_schedule(config.steps)
        self.time_left = TimeLeft.of(config, self.attention_steps, self.specialization_steps & self.attention_steps)
        self.recent = RecentBatches()
        self.step, self.seconds, self.accuracy = 0, 0.0, 0.0
        self.attended_at = self.specialized_at = self.kept_step = None
        self.last_kept = time.perf_counter()

    def _draw_batch(self) -> ClaimTensors:
        """A training batch drawn with replacement: uniformly from the pool, or with each class equally likely."""
        size = (self.config.batch_size,)
        if self.draw_weights is None:
            index = torch.randint(len(self.train_set), size, generator=self.sampler)
        else:
            index = torch.multinomial(self.draw_weights, size[0], replacement=True, generator=self.sampler)
        return self.train_set.subset(index.to(self.train_set.tokens.device)).trimmed()

    def emit(self, event: Event) -> None:
        for observer in self.observers:
            observer.hear(event)

    def run(self, started_at: float, prepare_seconds: float = 0.0) -> Status:
        """Train until the last step, a stop, divergence, the target accuracy or the time limit: how the run ended.
        `started_at`: when Train was pressed (perf_counter), for the seconds it took to reach the first step."""
        self._begin(started_at, prepare_seconds)
        clock = Clock()
        for step in range(1, self.config.steps + 1):
            clock.exclude(self._wait_while_paused())
            if self.control.stopping.is_set():
                return self._end(Ending("stopped"))
            step_started = time.perf_counter()
            for group in self.optimizer.param_groups:
                group["lr"] = learning_rate(self.config, step)
            batch = self._draw_batch()
            loss, logits = loss_and_logits(self.model, batch)
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                return self._diverged(loss_value)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.threads.record(time.perf_counter() - step_started)
            self.step = step
            self.seconds, rate = clock.tick(step)
            self.recent.add(loss_value, teacher_forced_outcomes(logits.detach()), batch.classes)
            self.time_left.add_step(time.perf_counter() - step_started)
            self.emit(StepPoint(step, loss_value, self.seconds, rate, self.time_left.seconds(step)))
            ending = self._measure(step)
            if ending is not None:
                return ending
        commonest, chance = commonest_class(self.heldout.classes)
        return self._end(Ending("finished", self.accuracy, chance, commonest))

    def _begin(self, started_at: float, prepare_seconds: float) -> None:
        commonest, chance = commonest_class(self.heldout.classes)
        self.emit(
            RunStart(
                self.data.probe_claims,
                tuple(self.model.attention_names()),
                self.config.model.n_heads,
                prepare_seconds,
                chance,
                commonest,
            )
        )
        if self.measure:
            self._observe(with_specialization=True)
        self._evaluate()
        self._publish(keep=False)
        self.emit(Status("running", 0, 0.0, setup_seconds=time.perf_counter() - started_at))

    def _measure(self, step: int) -> Status | None:
        """What is measured after this step; how the run ends, when it ends here (target accuracy, time limit)."""
        config = self.config
        if self.measure and (step % config.optim_every == 0 or step == 1):
            with self.time_left.timing("optimizer"):
                self.emit(optimizer_stats(self.model, self.optimizer, step))
        if step in self.attention_steps:
            self._observe(with_specialization=step in self.specialization_steps)
        out_of_time = config.max_seconds is not None and self.seconds >= config.max_seconds
        if evaluated(step, config) or step == config.steps or out_of_time:
            with self.time_left.timing("held-out"):
                accuracy = self._evaluate()
                self._publish(keep=time.perf_counter() - self.last_kept >= CHECKPOINT_SECONDS)
            if config.target_accuracy is not None and accuracy >= config.target_accuracy:
                return self._end(Ending("target", accuracy))
        if out_of_time:
            return self._end(Ending("time_limit", time_limit=config.max_seconds))
        return None

    def _evaluate(self) -> float:
        heldout_loss, heldout_accuracy, heldout_per_class = evaluate(self.model, self.heldout)
        if self.recent.empty:
            train_loss, train_accuracy, train_per_class = heldout_loss, heldout_accuracy, heldout_per_class
        else:
            train_loss, (train_accuracy, train_per_class) = self.recent.summary()
        self.emit(
            EvalPoint(
                step=self.step,
                seconds=self.seconds,
                train_loss=train_loss,
                heldout_loss=heldout_loss,
                train_accuracy=train_accuracy,
                heldout_accuracy=heldout_accuracy,
                train_per_class=train_per_class,
                heldout_per_class=heldout_per_class,
            )
        )
        self.accuracy = heldout_accuracy
        return heldout_accuracy

    def _observe(self, with_specialization: bool) -> None:
        if self.attended_at != self.step:
            with self.time_left.timing("attention"):
                self.emit(capture_probe(self.model, self.probe, self.step))
            self.attended_at = self.step
        if with_specialization and self.specialized_at != self.step:
            with self.time_left.timing("heads"):
                self.emit(specialization(self.model, self.heldout, self.step, N_CATEGORIES, self.pairs, self.reference))
            self.specialized_at = self.step

    def _publish(self, keep: bool, weights: dict[str, torch.Tensor] | None = None) -> None:
        self.emit(Weights(self.step, weights or cpu_weights(self.model), self.config.model.to_dict(), keep))
        if keep:
            self.kept_step, self.last_kept = self.step, time.perf_counter()

    def _wait_while_paused(self) -> float:
        """Seconds spent paused before this step (0 when not paused)."""
        if self.control.running.is_set():
            return 0.0
        paused_at = time.perf_counter()
        self.emit(Status("paused", self.step, self.seconds))
        while not self.control.running.wait(0.2):
            pass
        if not self.control.stopping.is_set():
            self.emit(Status("running", self.step, self.seconds))
        return time.perf_counter() - paused_at

    def _end(self, ending: Ending) -> Status:
        """The last measurements and the weights kept; a finished run has its heads measured at its last step."""
        status = ENDED_BY[ending.by]
        if status == "finished" and self.measure:
            self._observe(with_specialization=True)
        if self.kept_step != self.step:  # not already kept by this step's own evaluation
            self._publish(keep=True)
        return Status(status, self.step, self.seconds, ending)

    def _diverged(self, loss_value: float) -> Status:
        """Stop with the weights from before the bad step kept, when they are still finite numbers (checked before
        the optimizer step, so one bad batch leaves them intact; a step that already wrote inf leaves the last
        kept weights, and its ending says which)."""
        weights = cpu_weights(self.model)
        if all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point()):
            self._publish(keep=True, weights=weights)
            kept, kept_step = "step", self.step
        elif self.kept_step is not None:
            kept, kept_step = "checkpoint", self.kept_step
        else:
            kept, kept_step = "none", None
        return Status(
            "diverged",
            self.step,
            self.seconds,
            Ending("diverged", loss=str(loss_value), kept=kept, kept_step=kept_step),
        )
