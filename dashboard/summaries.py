"""Pure text builders: what the numbers say, in plain words. No Streamlit here, so they are unit-tested directly."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from dashboard.figures import optimizer_name
from engine.run_files import TENSORBOARD, is_watched
from engine.telemetry import ENDED_STATUSES, Snapshot
from engine.training.config import TrainConfig
from engine.training.schedule import LR_FLOOR, floor_step


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = round(seconds)
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def progress_text(snap: Snapshot) -> str:
    if is_watched(snap.config):  # its loop never said how many steps it will take
        return f"Step {snap.step:,} · {duration(snap.seconds)} of training"
    parts = [f"Step {snap.step:,} of {snap.total_steps:,}"]
    if snap.status == "running" and snap.steps_per_second > 0:
        parts += [f"{snap.steps_per_second:.1f} steps/s", f"about {duration(snap.eta_seconds)} left"]
    elif snap.seconds:
        parts.append(f"{duration(snap.seconds)} of training")
    return " · ".join(parts)


def status_text(snap: Snapshot) -> str:
    """The run's state in one sentence. A finished, stopped or failed run's own message (the error, for one that
    failed) wins; while it trains, these sentences say more than the engine's one-word messages."""
    if snap.message and snap.status in ENDED_STATUSES:
        return snap.message
    if snap.status == "running" and is_watched(snap.config):
        return snap.message  # where it trains, and that the page follows it
    return {
        "idle": "No training yet. Choose the settings and press Train.",
        "preparing": "Preparing the claims and the model: this takes a few seconds (longer for bigger recipes).",
        "running": f"Training with {optimizer_name(snap.config)}.",
        "paused": f"Paused at step {snap.step:,}. Press Resume to continue.",
        "finished": f"Finished {snap.step:,} steps.",
        "stopped": f"Stopped at step {snap.step:,}.",
        "failed": "Training failed.",
        "diverged": "Training diverged: the loss stopped being a finite number. Try a smaller learning rate.",
    }[snap.status]


def config_text(config: Mapping[str, Any]) -> str:
    if not config:
        return ""
    tensorboard = f"; TensorBoard files in its folder's {TENSORBOARD}/" if config.get("tensorboard") is True else ""
    if is_watched(config):
        return (f"your own model, recorded by engine.watch: {optimizer_name(config)}, learning rate "
                f"{config.get('lr')} at the start{tensorboard}")
    repeatable = "" if config.get("threads", 0) else " (threads measured as it trained: the seed does not repeat it)"
    return (f"{optimizer_name(config)}, learning rate {config.get('lr')}, batch {config.get('batch_size')}, "
            f"seed {config.get('seed')}{repeatable}, {config.get('steps'):,} steps{tensorboard}")


def schedule_text(values: Mapping[str, Any]) -> str:
    """A run's learning-rate schedule in words (runs saved before decay_fraction existed decayed until their end)."""
    if is_watched(values):
        return "the learning-rate schedule of its own training loop"
    config = TrainConfig.from_dict(values)
    warmup = f"learning-rate warm-up over {config.warmup_steps:,} steps"
    if config.schedule != "cosine":
        return f"{warmup}, then constant"
    return f"{warmup}, then a cosine down to {LR_FLOOR:.0%} by step {floor_step(config):,}"


def _loss_until(snap: Snapshot, step: int, window: int = 20) -> np.ndarray:
    values = [v for s, v in zip(snap.loss.steps, snap.loss.values, strict=True) if s <= step]
    return np.asarray(values[-window:])


SAME = 1.05  # two measurements within 5% of each other read as "about the same"
SWINGS_MORE = 1.5  # one optimizer's step-to-step jumps this many times the other's: it swings more


def _compared(what: str, a: str, mine: float, b: str, theirs: float) -> str:
    """'Adam's training loss is 2.4 times lower than plain SGD's (0.412 against 0.985)' in plain words."""
    (low, low_name), (high, high_name) = sorted([(mine, a), (theirs, b)])
    numbers = f"({a} {mine:.3f}, {b} {theirs:.3f})"
    if low <= 0 or high / low < SAME:
        return f"the {what} is about the same for both {numbers}"
    ratio = high / low
    amount = f"{ratio:.1f} times" if ratio >= 1.5 else "a little"
    return f"{low_name}'s {what} is {amount} lower than {high_name}'s {numbers}"


def _swings(a: str, mine: np.ndarray, b: str, theirs: np.ndarray) -> str:
    """Does one optimizer swing back and forth more? Step-to-step jumps as a share of the loss's own level."""
    jumps = [np.abs(np.diff(v)).mean() / max(v.mean(), 1e-12) for v in (mine, theirs)]
    said = f"From one step to the next the loss jumps by {jumps[0]:.1%} of its level under {a}, {jumps[1]:.1%} " \
           f"under {b}"
    if max(jumps) < SWINGS_MORE * min(jumps):
        return f"{said}: neither swings back and forth more than the other here (both jitter, because every step " \
               "sees a different batch of claims)."
    more, less = (a, b) if jumps[0] > jumps[1] else (b, a)
    return f"{said}: {more} swings back and forth more than {less} here."


def race_summary(main: Snapshot, race: Snapshot) -> str:
    """Compare the two measured curves at the same step, whichever run is ahead, and answer the story's question
    (does plain SGD swing back and forth while Adam settles?) from them."""
    step = min(main.step, race.step)
    mine, theirs = _loss_until(main, step), _loss_until(race, step)
    if step == 0 or not len(mine) or not len(theirs):
        return "The race has not produced any steps yet."
    a, b = optimizer_name(main.config), optimizer_name(race.config)
    recent = min(len(mine), len(theirs))
    lines = [f"At step {step:,}, over the last {recent} recorded steps, "
             + _compared("training loss", a, mine.mean(), b, theirs.mean()) + "."]
    held = {e.step: e.heldout_loss for e in race.evals}
    common = [e for e in main.evals if e.step in held]
    if common:
        e = common[-1]
        lines.append(f"On held-out claims (never trained on) at step {e.step:,}, "
                     + _compared("loss", a, e.heldout_loss, b, held[e.step]) + ".")
    if len(mine) > 2 and len(theirs) > 2:
        lines.append(_swings(a, mine, b, theirs))
    return " ".join(lines)
