"""Pure text builders: what the numbers say, in plain words. No Streamlit here, so they are unit-tested directly."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from dashboard.figures import optimizer_name
from engine.runs.layout import TENSORBOARD, is_watched
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
        return (
            f"your own model, recorded by headwatch.watch: {optimizer_name(config)}, learning rate "
            f"{config.get('lr')} at the start{tensorboard}"
        )
    repeatable = "" if config.get("threads", 0) else " (threads measured as it trained: the seed does not repeat it)"
    return (
        f"{optimizer_name(config)}, learning rate {config.get('lr')}, batch {config.get('batch_size')}, "
        f"seed {config.get('seed')}{repeatable}, {config.get('steps'):,} steps{tensorboard}"
    )


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
MEANINGFUL_LOSS = 0.1  # below this loss, a rise from one step to the next is a harder batch, not a swing
SWING_GAP = 0.05  # one optimizer's loss rises at this many more of its steps: it swings more
MIN_PHASE = 20  # steps of a phase to compare at all
SMOOTHING = 20  # steps averaged to tell where a loss falls below MEANINGFUL_LOSS


def _compared(what: str, a: str, mine: float, b: str, theirs: float) -> str:
    """'Adam's training loss is 2.4 times lower than plain SGD's (0.412 against 0.985)' in plain words."""
    (low, low_name), (high, high_name) = sorted([(mine, a), (theirs, b)])
    numbers = f"({a} {mine:.3f}, {b} {theirs:.3f})"
    if low <= 0 or high / low < SAME:
        return f"the {what} is about the same for both {numbers}"
    ratio = high / low
    amount = f"{ratio:.1f} times" if ratio >= 1.5 else "a little"
    return f"{low_name}'s {what} is {amount} lower than {high_name}'s {numbers}"


def _meaningful_until(losses: np.ndarray) -> int:
    """How many first steps of a loss curve come before its running mean falls below MEANINGFUL_LOSS."""
    if len(losses) < SMOOTHING:
        return len(losses) if losses.mean() >= MEANINGFUL_LOSS else 0
    means = np.convolve(losses, np.ones(SMOOTHING) / SMOOTHING, mode="valid")
    low = np.flatnonzero(means < MEANINGFUL_LOSS)
    return len(losses) if not len(low) else int(low[0])


def _on_one_grid(main: Snapshot, race: Snapshot, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both loss curves up to `step` as means over the same stretches of steps: the coarser curve's (a long run's
    history keeps the mean of every few steps). Returns the stretches' last steps and both curves' means."""
    curves = [(np.asarray(s.loss.steps), np.asarray(s.loss.values)) for s in (main, race)]
    start = max(steps[0] for steps, _ in curves)
    kept = [
        (steps[(steps >= start) & (steps <= step)], values[(steps >= start) & (steps <= step)])
        for steps, values in curves
    ]
    grid = min((steps for steps, _ in kept), key=len)
    means = []
    for steps, values in kept:
        bucket = np.searchsorted(grid, steps)  # the stretch each recorded step falls in
        inside = bucket < len(grid)
        sums = np.bincount(bucket[inside], values[inside], len(grid))
        means.append(sums / np.maximum(np.bincount(bucket[inside], minlength=len(grid)), 1))
    return grid, means[0], means[1]


def swings(a: str, mine: np.ndarray, b: str, theirs: np.ndarray, steps: np.ndarray) -> str:
    """The story's oscillation, measured: how often each loss went up from one recorded point to the next, while
    both were still above MEANINGFUL_LOSS (both curves on the same `steps`)."""
    phase = min(_meaningful_until(mine), _meaningful_until(theirs))
    if phase == len(steps) < MIN_PHASE:
        return f"Too few steps so far ({phase}) to say whether either loss swings back and forth."
    if phase < MIN_PHASE:
        when = f"by step {steps[phase]:,}" if phase else "from the start"
        return (
            f"One of the losses was below {MEANINGFUL_LOSS} {when}, too soon to compare swings: below that, a "
            "rise from one step to the next is a harder batch of claims, not a swing."
        )
    rises = [float((np.diff(v[:phase]) > 0).mean()) for v in (mine, theirs)]
    width = int(np.median(np.diff(steps[:phase])))
    unit = "step" if width == 1 else f"stretch of {width} steps"
    said = (
        f"While both losses were above {MEANINGFUL_LOSS} (steps {steps[0]:,} to {steps[phase - 1]:,}), the loss "
        f"went up from one {unit} to the next at {rises[0]:.0%} of {a}'s and {rises[1]:.0%} of {b}'s"
    )
    if abs(rises[0] - rises[1]) < SWING_GAP:
        return (
            f"{said}: neither swung back and forth more than the other (some rises are only a harder batch, "
            "since every step sees other claims)."
        )
    more, less = (a, b) if rises[0] > rises[1] else (b, a)
    return f"{said}: {more} swung back and forth more often than {less}."


def race_summary(main: Snapshot, race: Snapshot) -> str:
    """Compare the two measured curves at the same step, whichever run is ahead, and answer the story's question
    (does plain SGD swing back and forth while Adam settles?) from them."""
    step = min(main.step, race.step)
    mine, theirs = _loss_until(main, step), _loss_until(race, step)
    if step == 0 or not len(mine) or not len(theirs):
        return "The race has not produced any steps yet."
    a, b = optimizer_name(main.config), optimizer_name(race.config)
    recent = min(len(mine), len(theirs))
    lines = [
        f"At step {step:,}, over the last {recent} recorded steps, "
        + _compared("training loss", a, mine.mean(), b, theirs.mean())
        + "."
    ]
    held = {e.step: e.heldout_loss for e in race.evals}
    common = [e for e in main.evals if e.step in held]
    if common:
        e = common[-1]
        lines.append(
            f"On held-out claims (never trained on) at step {e.step:,}, "
            + _compared("loss", a, e.heldout_loss, b, held[e.step])
            + "."
        )
    grid, mine_all, theirs_all = _on_one_grid(main, race, step)
    lines.append(swings(a, mine_all, b, theirs_all, grid))
    return " ".join(lines)
