"""The training loop, in a background thread. It knows nothing of the UI: it reports into a TelemetryHub
and, when given a folder, into a RunWriter. Start, pause, resume, stop and reset are safe from any thread."""

from __future__ import annotations

import logging
import math
import os
import shutil
import statistics
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import NoReturn

import torch
import torch.nn.functional as F

from engine.analysis import capture_probe, specialization
from engine.attribution import PairBatch, run_pairs
from engine.claims_csv import CsvProblem, build_data_from_csv
from engine.dataset import N_CATEGORIES, ClaimData, ClaimTensors, build_data
from engine.metrics import commonest_class, optimizer_stats, per_class_accuracy
from engine.model import (
    CROSS_KEYS,
    TARGET_VOCAB,
    ClaimsTransformer,
    ModelConfig,
    targets_for_classes,
    teacher_forced_outcomes,
)
from engine.runs import RunError, RunWriter
from engine.telemetry import EvalPoint, TelemetryHub

OPTIMIZERS = ("adam", "sgd", "sgd-momentum")
SCHEDULES = ("cosine", "constant")
MAX_STEPS = 1_000_000
CHECKPOINT_SECONDS = 15.0
# Forward passes over a few hundred claims at a time: larger ones cost more per claim on CPU (tensor copies)
EVAL_CHUNK = 250
LR_FLOOR = 0.1  # share of the learning rate the cosine schedule ends at
POOL_CACHE = ".pools"  # beside the run folders: tokenized claim pools, reused by later runs with the same settings


def unsaved_pool_cache() -> Path | None:
    """Where runs that are not saved keep their pools: the user's cache folder (best effort, like every pool);
    None when the user has no home folder to find it in."""
    try:
        return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "headwatch" / "pools"
    except RuntimeError:
        return None


class ConfigError(ValueError):
    """A setting outside its allowed range; the message names the field and the range."""


class EngineBusy(RuntimeError):
    """A run is already training; stop or reset it first."""


# (low, high, low inclusive) for every number a user can set
LIMITS: dict[str, tuple[float, float, bool]] = {
    "lr": (0.0, 10.0, False),
    "batch_size": (1, 1024, True),
    "steps": (1, MAX_STEPS, True),
    "seed": (0, 2**31 - 1, True),
    "data_seed": (0, 2**31 - 1, True),
    "warmup_steps": (0, MAX_STEPS, True),
    "pool_size": (100, 500_000, True),
    "heldout_size": (50, 50_000, True),
    "eval_every": (1, MAX_STEPS, True),
    "optim_every": (1, MAX_STEPS, True),
    "threads": (0, 64, True),
    "momentum": (0.0, 0.999, True),
    "beta2": (0.0, 0.9999, True),
    "weight_decay": (0.0, 1.0, True),
    "decay_fraction": (0.0, 1.0, False),
}


@dataclass
class TrainConfig:
    preset: str = "default"
    optimizer: str = "adam"
    lr: float = 3e-3
    batch_size: int = 128
    steps: int = 2000
    seed: int = 0  # starting weights and the order claims are drawn in
    # which claims are generated (training pool, held-out set): the same for every run unless changed, so runs
    # are compared on the same held-out claims and a pool built once (cached) serves every later run
    data_seed: int = 0
    warmup_steps: int = 100
    schedule: str = "cosine"
    decay_fraction: float = 1.0  # the cosine reaches its floor (LR_FLOOR) after this share of the steps, then stays
    momentum: float = 0.9
    beta2: float = 0.999  # Adam's second-moment decay: its memory of mistake sizes spans ~1 / (1 - beta2) steps
    weight_decay: float = 0.0  # Adam's decoupled weight decay (AdamW) on weight matrices and embeddings
    pool_size: int = 40_000
    heldout_size: int = 1000
    eval_every: int = 100
    optim_every: int = 10
    max_seconds: float | None = None
    target_accuracy: float | None = None
    # A fixed count repeats a seed's run bit for bit (float sums split across threads round differently); 0 measures
    # 1 vs 2 as the run goes (ThreadTuner): faster on an idle machine, but a run does not repeat.
    threads: int = 1
    device: str = "auto"
    claims_csv: str | None = None  # train on a user's claims file instead of generated claims
    model: ModelConfig = field(default_factory=ModelConfig)

    def validate(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)} (got '{self.optimizer}')")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)} (got '{self.schedule}')")
        for name, (low, high, inclusive) in LIMITS.items():
            value = getattr(self, name)
            ok = isinstance(value, int | float) and math.isfinite(value)
            ok = ok and (low <= value if inclusive else low < value) and value <= high
            if not ok:
                opening = "[" if inclusive else "("
                raise ConfigError(f"{name.replace('_', ' ')} must be in {opening}{low:g}, {high:g}] (got {value!r})")
        if self.max_seconds is not None and not (0 < self.max_seconds <= 7 * 24 * 3600):
            raise ConfigError(f"max seconds must be in (0, 604800] (got {self.max_seconds!r})")
        if self.target_accuracy is not None and not (0 < self.target_accuracy <= 1):
            raise ConfigError(f"target accuracy must be in (0, 1] (got {self.target_accuracy!r})")
        if self.model.cross_keys not in CROSS_KEYS:
            raise ConfigError(f"cross keys must be one of {', '.join(CROSS_KEYS)} (got '{self.model.cross_keys}')")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        config = cls(**{k: v for k, v in values.items() if k in known and k != "model"})
        config.model = ModelConfig.from_dict(values.get("model", {}))
        return config


def snapshot_steps(total: int, ratio: float = 1.25) -> set[int]:
    """Log-spaced steps (dense early, where specialization emerges) plus the last one."""
    steps, value = {0, total}, 1.0
    while value <= total:
        steps.add(int(value))
        value = max(value * ratio, value + 1)
    return steps


EARLY_EVALUATIONS = (10, 20, 50)  # before the first regular one: the first seconds of a curve are its steepest


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


def pick_device(config: TrainConfig) -> torch.device:
    if config.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(config.device)


def cpu_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the weights that later steps cannot change."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def loss_and_logits(model: ClaimsTransformer, batch: ClaimTensors) -> tuple[torch.Tensor, torch.Tensor]:
    inputs, labels = targets_for_classes(batch.classes)
    logits = model(batch.tokens, batch.categories, inputs)  # (B, 3, V)
    return F.cross_entropy(logits.reshape(-1, len(TARGET_VOCAB)), labels.reshape(-1)), logits


@torch.no_grad()
def evaluate(model: ClaimsTransformer, data: ClaimTensors) -> tuple[float, float, dict[str, float]]:
    """(loss, exact-match accuracy of greedy decoding, accuracy per true class) on a set of claims."""
    was_training = model.training
    model.eval()
    chunks = [loss_and_logits(model, data.subset(slice(i, i + EVAL_CHUNK)).trimmed())
              for i in range(0, len(data), EVAL_CHUNK)]
    model.train(was_training)
    loss = sum(float(chunk_loss) * len(logits) for chunk_loss, logits in chunks) / max(len(data), 1)
    logits = torch.cat([logits for _, logits in chunks])
    accuracy, per_class = per_class_accuracy(teacher_forced_outcomes(logits), data.classes)
    return loss, accuracy, per_class


class ThreadTuner:
    """Chooses 1 or 2 intra-op threads by measuring step times as the run goes. On an idle 2-core machine two
    threads are ~1.3x faster; when anything else wants a core (a viewer's page rerun, another process) they are
    2-5x slower, since each op waits for its slower half. So: try the other count for a few steps now and then
    (and at once when steps slow down), keep the faster, and give up a try when a step comes out far slower."""

    FIRST_TRY, PERIOD, TRIAL = 20, 200, 8

    def __init__(self, threads: int) -> None:
        most = min(2, os.cpu_count() or 1)
        self.choices = (threads,) if threads else tuple(sorted({1, most}))
        self.current = self.choices[-1]
        self.times: dict[int, deque[float]] = {n: deque(maxlen=16) for n in self.choices}
        self.on_current, self.tried, self.trying = 0, False, False
        torch.set_num_threads(self.current)

    def _use(self, threads: int) -> None:
        self.current, self.on_current = threads, 0
        torch.set_num_threads(threads)

    def _slowed_down(self, other: int) -> bool:
        """Steps now take far longer than the other count's did when last tried (viewers arrived, say): try it
        again now rather than at the next period."""
        recent, known = self.times[self.current], self.times[other]
        fresh = self.on_current >= len(recent) == recent.maxlen  # every step in the window ran on this count
        return fresh and bool(known) and statistics.fmean(recent) > 1.5 * statistics.fmean(known)

    def record(self, step_seconds: float) -> None:
        if len(self.choices) == 1:
            return
        self.times[self.current].append(step_seconds)
        self.on_current += 1
        other = self.choices[0] if self.current == self.choices[1] else self.choices[1]
        if self.trying:
            # means, not medians: under intermittent contention most steps with two threads are fast and a few
            # stall for far longer, and the stalls are what cost the time
            baseline = statistics.fmean(self.times[other])
            if self.on_current >= self.TRIAL or step_seconds > 3 * baseline:
                trial = statistics.fmean(list(self.times[self.current])[-self.on_current:])
                self.trying = False
                self._use(self.current if trial < baseline else other)
        elif self.on_current >= (self.PERIOD if self.tried else self.FIRST_TRY) or self._slowed_down(other):
            self.trying = self.tried = True
            self.times[other].clear()
            self._use(other)


def _failure(error: Exception) -> str:
    """What the page says when training fails: our own errors are written for users; anything else is logged for
    whoever runs the server, and the page gets no exception text."""
    if isinstance(error, ConfigError | CsvProblem | RunError):
        return f"Training failed: {error}"
    logging.getLogger("headwatch").error("training failed", exc_info=error)
    return "Training failed because of an unexpected error; its details are in the log of the process that trained it."


class StopRun(Exception):
    """Ends a run early: StopRun(status, message, step, seconds), the step and training seconds it ended at."""


class Trainer:
    """Owns at most one training thread and the model it trains."""

    def __init__(self, hub: TelemetryHub) -> None:
        self.hub = hub
        self._control = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._running = threading.Event()  # cleared while paused
        self._published: tuple[int, dict[str, torch.Tensor]] | None = None
        self._generation = 0  # bumped by reset: a thread of an older generation must not write any more
        self.data: ClaimData | None = None
        self._prepare_seconds = 0.0
        self._model_config: dict = {}
        self._pairs: PairBatch | None = None  # the minimal pairs heads are attributed on, made once per run
        self.config: TrainConfig | None = None
        self.save_problem: str | None = None  # why the run's folder is incomplete, once saving failed

    @property
    def active(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, config: TrainConfig, folder: Path | None = None, run_id: str | None = None) -> None:
        config.validate()
        with self._control:
            if self.active:
                raise EngineBusy("A run is already training: stop or reset it first.")
            self._generation += 1
            self._stop.clear()
            self._running.set()
            self._published = None
            self.save_problem = None
            self.config = config
            self.hub.begin(run_id, str(folder) if folder else None, config.to_dict(), config.steps)
            self._thread = threading.Thread(target=self._run, args=(config, folder, self._generation), daemon=True,
                                            name="headwatch-trainer")
            self._thread.start()

    def pause(self) -> None:
        with self._control:
            if self.active and self._running.is_set():
                self._running.clear()

    def resume(self) -> None:
        with self._control:
            self._running.set()

    def stop(self, timeout: float = 2.0) -> None:
        """Ask the run to stop and wait up to `timeout` s (a page must not freeze while data is still being built:
        the thread then stops as soon as preparation ends)."""
        self._stop.set()
        self._running.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def reset(self) -> None:
        """Forget the run. A thread still preparing data is left to exit on its own; it writes nothing more."""
        with self._control:
            self._generation += 1
        self.stop(timeout=5.0)
        with self._control:
            self._published = None
            self.data = None
            self.config = None
            self.hub.reset()

    def published_weights(self) -> tuple[int, dict[str, torch.Tensor]] | None:
        """The latest consistent copy of the weights (taken by the training thread between steps)."""
        return self._published

    def _publish(self, model: ClaimsTransformer, step: int) -> dict[str, torch.Tensor]:
        weights = cpu_weights(model)
        self._published = (step, weights)
        return weights

    def _wait_while_paused(self, step: int, writer: RunWriter | None, seconds: float) -> float:
        if self._running.is_set():
            return 0.0
        paused_at = time.perf_counter()
        self.hub.set_status("paused", f"Paused at step {step}")
        if writer:
            writer.status("paused", f"Paused at step {step}", step, seconds)
        while not self._running.wait(0.2):
            pass
        if not self._stop.is_set():
            self.hub.set_status("running", "Training")
        return time.perf_counter() - paused_at

    def _run(self, config: TrainConfig, folder: Path | None, generation: int) -> None:
        writer: RunWriter | None = None
        step, seconds = 0, 0.0
        try:
            device = pick_device(config)
            prepare_started = time.perf_counter()
            if config.claims_csv:
                data = build_data_from_csv(Path(config.claims_csv), config.data_seed, config.model.max_len)
            else:
                cache = folder.parent / POOL_CACHE if folder is not None else unsaved_pool_cache()
                data = build_data(config.data_seed, config.pool_size, config.heldout_size, config.model.max_len, cache)
            model_config = ModelConfig(**{**asdict(config.model), "vocab_size": len(data.tokenizer.vocab),
                                          "n_categories": N_CATEGORIES})
            config.model = model_config
            if folder is not None:
                writer = self._open_writer(folder, config, data)
            self._prepare_seconds = time.perf_counter() - prepare_started
            if generation != self._generation:
                return  # reset while preparing: this run no longer exists
            self.data = data
            if self._stop.is_set():
                raise StopRun("stopped", "Stopped by the user before the first step", 0, 0.0)
            step, seconds = self._train(config, data, device, writer, prepare_started)
        except StopRun as reason:
            self._finish(writer, *reason.args, generation=generation)
        except Exception as error:
            self._finish(writer, "failed", _failure(error), step=step, seconds=seconds, generation=generation)
        finally:
            if writer:
                writer.close()
                self.save_problem = writer.failed

    def _open_writer(self, folder: Path, config: TrainConfig, data: ClaimData) -> RunWriter | None:
        """The run's writer; when its folder cannot be written (a full disk) the run trains on unsaved, says so,
        and leaves no empty run folder behind."""
        created = not folder.exists()
        try:
            return RunWriter(folder, config.to_dict(), data.tokenizer.to_json(), data.probe_claims)
        except OSError as error:
            if created:
                shutil.rmtree(folder, ignore_errors=True)
            self.save_problem = f"the run folder could not be written: {error.strerror or error}"
            self.hub.set_unsaved(f"This run is not being saved ({self.save_problem}); it trains on anyway.")
            return None

    def _finish(self, writer: RunWriter | None, status: str, message: str, step: int, seconds: float,
                generation: int | None = None) -> None:
        # the run's folder first: whoever sees the run end (a viewer, a test) then finds it ended on disk too
        try:
            if writer:
                writer.status(status, message, step, seconds)
        finally:
            if generation is None or generation == self._generation:
                self.hub.set_status(status, message)

    def _train(self, config: TrainConfig, data: ClaimData, device: torch.device, writer: RunWriter | None,
               run_started: float) -> tuple[int, float]:
        torch.manual_seed(config.seed)
        model = ClaimsTransformer(config.model).to(device)
        self._model_config = config.model.to_dict()
        optimizer = make_optimizer(config, model)
        sampler = torch.Generator().manual_seed(config.seed)
        train, heldout, probe = data.train.to(device), data.heldout.to(device), data.probe.to(device)
        _, chance = commonest_class(heldout.classes)
        self.hub.describe(data.probe_claims, tuple(model.attention_names()), config.model.n_heads,
                          self._prepare_seconds, chance)
        if writer:
            writer.chance = chance
        attention_steps, specialization_steps = snapshot_steps(config.steps), specialization_schedule(config.steps)
        recent = _RecentBatches()
        threads = ThreadTuner(config.threads)
        self._pairs = run_pairs(data.tokenizer, config.model.max_len, device)
        self._observe(model, probe, heldout, 0, writer, with_specialization=True)
        self._evaluate(model, heldout, 0, 0.0, recent, writer)
        self._publish(model, 0)
        self.hub.set_status("running", "Training")
        if writer:
            writer.status("running", "Training", 0, 0.0)

        seconds, step = 0.0, 0
        window_start, window_step, steps_per_second = time.perf_counter(), 0, 0.0
        started = last_checkpoint = time.perf_counter()
        self.hub.record_setup(started - run_started)
        paused_total = 0.0
        for step in range(1, config.steps + 1):
            paused = self._wait_while_paused(step - 1, writer, seconds)
            paused_total += paused
            window_start += paused
            if self._stop.is_set():
                weights = self._publish(model, step - 1)
                if writer:
                    writer.checkpoint(weights, step - 1, self._model_config)
                raise StopRun("stopped", f"Stopped by the user at step {step - 1}", step - 1, seconds)
            step_started = time.perf_counter()
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(config, step)
            index = torch.randint(len(train), (config.batch_size,), generator=sampler).to(device)
            batch = train.subset(index).trimmed()
            loss, logits = loss_and_logits(model, batch)
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                self._diverged(model, step, loss_value, writer, seconds)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            threads.record(time.perf_counter() - step_started)
            recent.add(loss_value, teacher_forced_outcomes(logits.detach()), batch.classes)
            now = time.perf_counter()
            seconds = now - started - paused_total
            if now - window_start >= 1.0:
                steps_per_second = (step - window_step) / (now - window_start)
                window_start, window_step = now, step
            elif steps_per_second == 0.0 and seconds > 0:
                steps_per_second = step / seconds
            self.hub.record_step(step, loss_value, seconds, steps_per_second)
            if writer:
                writer.log({"type": "step", "step": step, "loss": loss_value, "seconds": seconds})
            if step % config.optim_every == 0 or step == 1:
                point = optimizer_stats(model, optimizer, step)
                self.hub.record_optim(point)
                if writer:
                    writer.log_optim(point)
            if step in attention_steps:
                self._observe(model, probe, heldout, step, writer, with_specialization=step in specialization_steps)
            last = step == config.steps or (config.max_seconds is not None and seconds >= config.max_seconds)
            if evaluated(step, config) or last:
                accuracy = self._evaluate(model, heldout, step, seconds, recent, writer)
                if writer and writer.failed and not self.hub.snapshot().warning:
                    self.hub.set_warning(f"Training goes on, but this run is no longer saved: {writer.failed}")
                weights = self._publish(model, step)
                if writer and now - last_checkpoint >= CHECKPOINT_SECONDS:
                    writer.checkpoint(weights, step, self._model_config)
                    last_checkpoint = now
                if config.target_accuracy is not None and accuracy >= config.target_accuracy:
                    self._save_final(model, probe, heldout, step, writer)
                    raise StopRun("finished", f"Reached {accuracy:.1%} held-out accuracy at step {step}", step,
                                  seconds)
            if config.max_seconds is not None and seconds >= config.max_seconds:
                self._save_final(model, probe, heldout, step, writer)
                raise StopRun("finished", f"Time limit of {config.max_seconds:g} s reached at step {step}", step,
                              seconds)
        self._save_final(model, probe, heldout, step, writer)
        self._finish(writer, "finished", self._finished_message(step, seconds, heldout), step, seconds)
        return step, seconds

    def _finished_message(self, step: int, seconds: float, heldout: ClaimTensors) -> str:
        """How the run ended, with its final accuracy, and plainly when that is no better than chance."""
        accuracy = self.hub.snapshot().evals[-1].heldout_accuracy
        done = f"Finished {step:,} steps in {seconds:.0f} s with {accuracy:.1%} of held-out claims right"
        commonest, chance = commonest_class(heldout.classes)
        if accuracy > chance:
            return done + "."
        return (f"{done}: no better than answering {commonest} to every claim ({chance:.1%}). This run learned "
                "nothing useful: train longer, or try another learning rate.")

    def _diverged(self, model: ClaimsTransformer, step: int, loss_value: float, writer: RunWriter | None,
                  seconds: float) -> NoReturn:
        """Stop with the weights from before the bad step saved, when they are still finite numbers (checked before
        the optimizer step, so one bad batch leaves them intact; a step that already wrote inf leaves the last
        periodic checkpoint, and the message says which)."""
        weights = cpu_weights(model)
        if all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point()):
            self._published = (step - 1, weights)
            if writer:
                writer.checkpoint(weights, step - 1, self._model_config)
            kept = f"the weights of step {step - 1} are kept"
        elif writer and writer.checkpoint_step is not None:
            kept = f"the last good checkpoint (step {writer.checkpoint_step}) is kept"
        else:
            kept = "no finite weights were saved before it"
        raise StopRun("diverged", f"Diverged at step {step} (loss is {loss_value}); {kept}. "
                      "Try a smaller learning rate.", step - 1, seconds)

    def _save_final(self, model: ClaimsTransformer, probe: ClaimTensors, heldout: ClaimTensors, step: int,
                    writer: RunWriter | None) -> None:
        snapshot = self.hub.snapshot()
        if not snapshot.specialization or snapshot.specialization[-1].step != step:
            self._observe(model, probe, heldout, step, writer, with_specialization=True)
        weights = self._publish(model, step)
        if writer:
            writer.checkpoint(weights, step, self._model_config)

    def _evaluate(self, model: ClaimsTransformer, heldout: ClaimTensors, step: int, seconds: float,
                  recent: _RecentBatches, writer: RunWriter | None) -> float:
        heldout_loss, heldout_accuracy, heldout_per_class = evaluate(model, heldout)
        if recent.empty:
            train_loss, train_accuracy, train_per_class = heldout_loss, heldout_accuracy, heldout_per_class
        else:
            train_loss, (train_accuracy, train_per_class) = recent.summary()
        point = EvalPoint(
            step=step, seconds=seconds, train_loss=train_loss, heldout_loss=heldout_loss,
            train_accuracy=train_accuracy, heldout_accuracy=heldout_accuracy,
            train_per_class=train_per_class, heldout_per_class=heldout_per_class,
        )
        self.hub.record_eval(point)
        if writer:
            writer.log_eval(point)
        return heldout_accuracy

    def _observe(self, model: ClaimsTransformer, probe: ClaimTensors, heldout: ClaimTensors, step: int,
                 writer: RunWriter | None, with_specialization: bool) -> None:
        attention = capture_probe(model, probe, step)
        self.hub.record_attention(attention)
        if writer:
            writer.save_attention(attention)
        if with_specialization:
            point = specialization(model, heldout, step, N_CATEGORIES, self._pairs)
            self.hub.record_specialization(point)
            if writer:
                writer.log_specialization(point)


class _RecentBatches:
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
