"""Runs on disk: run ids and folders, listing and summarizing them, and replaying one into a Snapshot (the layout
and its records: engine.runs.reading; writing: engine.runs.writer)."""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import shutil
import stat
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from data.rules import CLASSES
from engine.runs.reading import ATTENTION, CHECKPOINT, CONFIG, MAX_ATTENTION_BYTES, MAX_TOKEN_CHARS, METRICS, PROBE, RECORDS, STATUS, WATCHED_EXAMPLES, WATCHED_POSITIONS, RunError, attention_file, is_watched, read_config, read_json, read_records, read_run_bytes, read_status, text
from engine.runs.writer import WriterLock
from engine.telemetry import (
    ACTIVE_STATUSES,
    OPTIM_MEASURES,
    AttentionPoint,
    Downsampler,
    ProbeClaim,
    Snapshot,
    at_most_chance,
    frozen,
    thin,
)

RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")  # whole ids only: see valid_run_id


def default_runs_dir() -> Path:
    return Path(os.environ.get("HEADWATCH_RUNS_DIR") or Path.cwd() / "runs")


def valid_run_id(name: str) -> bool:
    return RUN_ID_PATTERN.fullmatch(name) is not None and ".." not in name


def resolve_run(runs_dir: Path, run_id: str) -> Path:
    """The folder of `run_id` inside `runs_dir`; ids that could escape the folder are refused."""
    if not valid_run_id(run_id):
        raise RunError(f"'{run_id}' is not a valid run id (letters, digits, '.', '_' and '-' only)")
    if (runs_dir / run_id).is_symlink():
        raise RunError(f"run {run_id} is a link to another place, so it is not opened")
    path = (runs_dir / run_id).resolve()
    if path.parent != runs_dir.resolve():
        raise RunError(f"'{run_id}' is outside the runs folder")
    return path


def discard_run(runs_dir: Path, run_id: str) -> None:
    """Delete a run's folder (never a link, never anything outside the runs folder, never one a process writes)."""
    folder = resolve_run(runs_dir, run_id)
    if not folder.is_dir():
        return
    try:
        lock = WriterLock(folder)
    except (RunError, OSError):
        return  # written by another process now: not ours to delete
    try:
        shutil.rmtree(folder, ignore_errors=True)
    finally:
        lock.release()


TEMP_FILE_PATTERN = re.compile(r"^\..+\.[A-Za-z0-9_]+\.tmp$")
STALE_TEMP_SECONDS = 600  # an atomic write holds its temporary file for well under a second


def remove_stale_temp_files(runs_dir: Path) -> None:
    """Delete the temporary files of atomic writes that a killed process left in run folders."""
    try:
        runs = [run for run in runs_dir.iterdir() if valid_run_id(run.name)]
    except OSError:  # no runs folder yet, or one this process may not read: nothing to clean
        return
    folders = [folder for run in runs for folder in (run, (run / CHECKPOINT).parent, run / ATTENTION)
               if folder.is_dir() and not folder.is_symlink() and not run.is_symlink()]
    for path in (path for folder in folders for path in folder.glob(".*.tmp") if TEMP_FILE_PATTERN.match(path.name)):
        with contextlib.suppress(OSError):
            info = path.lstat()
            if stat.S_ISREG(info.st_mode) and time.time() - info.st_mtime > STALE_TEMP_SECONDS:
                path.unlink()


def _attention_weights(name: str, tensor: Any, probe: tuple[ProbeClaim, ...], heads: HeadCounts) -> np.ndarray:
    """(N claims or examples, H, Tq, Tk) weights, or ValueError for a tensor of another kind or shape. Headwatch's
    own runs: query rows up to the REASON position, and every key the longest probe claim needs (the decoder's
    self-attention keys the answer's own positions instead). A watched model's: a few examples of its batch."""
    if not isinstance(tensor, torch.Tensor) or tensor.dim() != 4 or not tensor.is_floating_point():
        raise ValueError("not attention weights")
    claims, found_heads, queries, keys = tensor.shape
    if found_heads < 1 or found_heads != heads.of(name):
        raise ValueError("not attention weights of this run")
    if not probe:
        if not (1 <= claims <= WATCHED_EXAMPLES and queries >= 1 and keys >= 1):
            raise ValueError("not attention weights of this run")
        return tensor.float().numpy()
    needed = 2 if name.startswith("decoder") and ".self" in name else max(len(c.tokens) for c in probe)
    if claims != len(probe) or queries < 2 or keys < max(2, needed):
        raise ValueError("not attention weights of this run")
    return tensor.float().numpy()


def load_attention(folder: Path, probe: tuple[ProbeClaim, ...], heads: HeadCounts) -> list[AttentionPoint]:
    """The saved attention snapshots; a half-written, damaged or foreign one is skipped, not fatal, and so is one
    that does not name the same attention layers as the last."""
    points = []
    for path in sorted((folder / ATTENTION).glob("step_*.pt")):
        step = re.fullmatch(r"step_(\d{1,12})\.pt", path.name)
        if step is None:
            continue
        try:
            data = read_run_bytes(folder, f"{ATTENTION}/{path.name}", MAX_ATTENTION_BYTES)
            tensors = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            weights = {text(name): _attention_weights(name, t, probe, heads) for name, t in tensors.items()}
            if not weights:
                raise ValueError("no attention weights")
        except Exception:  # torch raises many types for damaged files; RunError and ValueError for foreign ones
            continue
        points.append(_with_tokens(folder, AttentionPoint(int(step[1]), weights)))
    return [p for p in points if p.weights.keys() == points[-1].weights.keys()]


def _with_tokens(folder: Path, point: AttentionPoint) -> AttentionPoint:
    """A watched run's attention with the tokens saved beside it (none saved: as it is; damaged: why)."""
    name = f"{ATTENTION}/{attention_file(point.step, tokens=True)}"
    if not (folder / name).exists() and not (folder / name).is_symlink():
        return point
    try:
        return replace(point, tokens=read_tokens(read_json(folder, name)))
    except RunError as error:
        return replace(point, tokens_unread=str(error))
    except ValueError:
        return replace(point, tokens_unread=f"{name} is damaged (it does not list each example's tokens)")


def read_tokens(saved: Any) -> tuple[tuple[str, ...], ...]:
    """Each example's tokens as a watched run saves them (engine.runs.writer), each cut to MAX_TOKEN_CHARS; ValueError
    for anything else, or more examples or tokens than a watched run keeps."""
    examples = saved.get("tokens") if isinstance(saved, dict) else None
    if not isinstance(examples, list) or not 1 <= len(examples) <= WATCHED_EXAMPLES:
        raise ValueError("not a watched run's tokens")
    if not all(isinstance(tokens, list) and len(tokens) <= WATCHED_POSITIONS for tokens in examples):
        raise ValueError("not a watched run's tokens")
    return tuple(tuple(text(token)[:MAX_TOKEN_CHARS] for token in tokens) for tokens in examples)


def read_probe(folder: Path) -> tuple[ProbeClaim, ...]:
    claims = read_json(folder, PROBE)
    try:
        probe = tuple(ProbeClaim(text(c["text"]), text(c["label"]), tuple(map(text, c["tokens"])),
                                 tuple(map(text, c["categories"]))) for c in claims)
        if not all(claim.tokens for claim in probe):
            raise ValueError("a probe claim without words")
        return probe
    except (KeyError, TypeError, ValueError):
        raise RunError(f"{PROBE} is damaged (it does not list the probe claims)") from None


@dataclass(frozen=True)
class HeadCounts:
    """How many heads each attention layer of a run has: one count for all (Headwatch's own models), or one per
    layer (a watched model's layers may differ)."""

    every: int
    by_layer: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def of_run(cls, config: Mapping[str, Any]) -> HeadCounts:
        model = config.get("model", {})  # checked by read_config
        return cls(model.get("n_heads", 4), model.get("heads", {}) if is_watched(config) else {})

    def of(self, name: str) -> int:
        return self.by_layer.get(name, self.every)

    @property
    def most(self) -> int:
        return max([self.every, *self.by_layer.values()])


def _fits(kind: str, point: Any, heads: HeadCounts) -> bool:
    """False for a per-head record of another model (pages index every head)."""
    return kind not in ("optim", "specialization") or all(len(h) == heads.of(n) for n, h in point.heads.items())


def replay(folder: Path) -> Snapshot:
    """A saved run as a read-only Snapshot, for every page's replay; RunError (in plain words) if it is damaged."""
    config, status, probe = read_config(folder), read_status(folder), read_probe(folder)
    heads = HeadCounts.of_run(config)
    loss, evals, optim, specialization, metrics = Downsampler(), [], [], [], []
    last_step, seconds = 0, 0.0
    for kind, point in read_records(folder, RECORDS):
        if not _fits(kind, point, heads):
            continue
        if kind == "step":
            last_step, seconds = point.step, point.seconds
            loss.append(point.step, point.loss)
        elif kind == "eval":
            evals = thin([*evals, point], 1000)
        elif kind == "optim":
            optim = thin([*optim, point], 1000)
        elif kind == "metrics":
            metrics = thin([*metrics, point], 1000)
        else:
            specialization.append(point)
    attention = load_attention(folder, probe, heads)
    # a watched model's runs have no probe claims to show attention on: its attention layers are those measured
    names = tuple(attention[-1].weights) if attention else tuple(dict.fromkeys(n for p in optim for n in p.heads))
    run_status, message = _replayed_status(status, config)
    return Snapshot(
        run_id=folder.name, run_dir=str(folder), status=run_status, message=message,
        step=last_step, total_steps=config.get("steps") or last_step, seconds=seconds, config=frozen(config),
        loss=loss.series(), evals=tuple(evals), optim=tuple(optim), attention=tuple(attention),
        specialization=tuple(specialization), metrics=tuple(metrics), probe=probe, attention_names=names,
        n_heads=heads.most, read_only=True,
        chance=(status or {}).get("chance"), commonest=(status or {}).get("commonest"),
    )


OWN_COLUMNS = ("step", "seconds", "train_loss")  # the first columns of every metrics table
OPTIM_COLUMNS = tuple(OPTIM_MEASURES)


def metrics_table(folder: Path) -> tuple[list[str], list[list[object]]]:
    """Every recorded step of a saved run, one row each: the training loss; held-out losses and accuracies where
    it was evaluated; each attention head's Adam statistics where they were taken; each cross-attention head's
    name where the heads were measured. Blank where a step has no such record."""
    heads = HeadCounts.of_run(read_config(folder))
    rows: dict[int, dict[str, object]] = {}
    for kind, point in read_records(folder, RECORDS):
        if not _fits(kind, point, heads):
            continue
        if kind == "step":
            rows.setdefault(point.step, {}).update(seconds=round(point.seconds, 2), train_loss=point.loss)
        else:
            rows.setdefault(point.step, {}).update(_columns(kind, point))
    header = list(OWN_COLUMNS)
    header += sorted({k for row in rows.values() for k in row} - set(header), key=_column_order)
    return header, [[step, *(row.get(k) for k in header[1:])] for step, row in sorted(rows.items())]


def _columns(kind: str, point: Any) -> dict[str, object]:
    if kind == "eval":
        return {"seconds": round(point.seconds, 2), "heldout_loss": point.heldout_loss,
                "train_accuracy": point.train_accuracy, "heldout_accuracy": point.heldout_accuracy,
                **{f"heldout_{c}": v for c, v in point.heldout_per_class.items()}}
    if kind == "metrics":  # a loop's own name that is one of the table's gets "(yours)": neither hides the other
        return {f"{k} (yours)" if k in OWN_COLUMNS else k: v for k, v in point.values.items()}
    if kind == "optim":
        return {f"{name} head {h + 1} {stat}": getattr(stats, stat) for name, heads in point.heads.items()
                for h, stats in enumerate(heads) for stat in OPTIM_COLUMNS}
    return {f"{name} head {h + 1} label": head.label for name, heads in point.heads.items() if name.endswith(".cross")
            for h, head in enumerate(heads)}


EVAL_COLUMNS = ("heldout_loss", "train_accuracy", "heldout_accuracy", *(f"heldout_{c}" for c in CLASSES))


def _column_order(name: str) -> tuple[int, int, str]:
    """Evaluation columns first (in EVAL_COLUMNS' order), then optimizer statistics, then head names."""
    if name in EVAL_COLUMNS:
        return 0, EVAL_COLUMNS.index(name), name
    return (2 if name.endswith(" label") else 1), 0, name


TRAINING_ELSEWHERE = "training elsewhere"
HEARTBEAT_STALE_SECONDS = 30.0  # engine.recording.watch rewrites a training run's status every few seconds


def training_elsewhere(config: Mapping[str, Any], status: dict | None) -> bool:
    """A run recorded by headwatch.watch whose training loop said, less than HEARTBEAT_STALE_SECONDS ago, that it is
    training (in another process: this one only reads its files)."""
    return (is_watched(config) and (status or {}).get("status") in ACTIVE_STATUSES
            and _heard_lately((status or {}).get("updated")))


def _heard_lately(updated: object) -> bool:
    """A status rewritten less than HEARTBEAT_STALE_SECONDS ago (`updated`: its time, as status.json says)."""
    return isinstance(updated, int | float) and time.time() - updated < HEARTBEAT_STALE_SECONDS


def _replayed_status(status: dict | None, config: Mapping[str, Any]) -> tuple[str, str]:
    if status is None:
        return "stopped", f"{STATUS} is damaged, so how this run ended is unknown; shown up to its last save."
    if training_elsewhere(config, status):
        return "running", "Training elsewhere (headwatch.watch): shown up to its last save, and following it as it grows."
    if status.get("status", "stopped") in ACTIVE_STATUSES:
        return "stopped", "The server stopped while this run was training; shown up to its last save."
    return status.get("status", "stopped"), status.get("message", "")


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    started: float  # seconds since the epoch (folder creation)
    preset: str
    optimizer: str
    seed: int | None  # None when the config cannot be read
    status: str
    step: int
    accuracy: float | None
    head_labels: tuple[str, ...]  # cross-attention heads of the last specialization record
    problem: str | None = None  # why the folder cannot be opened, if it cannot
    note: str | None = None  # a damaged part that does not stop the run from being opened
    updated: float | None = None  # when a run training elsewhere last said so (status.json)
    # False: its held-out accuracy is no better than answering its commonest outcome, so its heads are not named
    learned: bool = True
    watched_heads: tuple[int, ...] | None = None  # a watched run's: each attention module's heads (none found: ())


def summarize(folder: Path) -> RunSummary:
    """One line about a run; a damaged folder gives a summary with `problem` set instead of an exception."""
    started = folder.lstat().st_mtime
    try:
        if folder.is_symlink():
            raise RunError("the run folder is a link to another place, so it is not read")
        config, status = read_config(folder), read_status(folder)
        latest = _latest(folder, HeadCounts.of_run(config))
        evaluation, measured = latest.get("eval"), latest.get("specialization")
        accuracy = evaluation.heldout_accuracy if evaluation else None
        step = max([(status or {}).get("step", 0), *(latest[k].step for k in ("step", "eval") if k in latest)])
        cross = [heads for name, heads in measured.heads.items() if name.endswith(".cross")] if measured else []
        labels = tuple(h.label for h in cross[-1]) if cross else ()
    except RunError as error:
        return RunSummary(folder.name, started, "?", "?", None, "damaged", 0, None, (), str(error))
    state = "unknown" if status is None else status.get("status", "stopped")
    if state in ACTIVE_STATUSES:
        state = TRAINING_ELSEWHERE if training_elsewhere(config, status) else "interrupted"
    chance = (status or {}).get("chance")
    learned = (state == TRAINING_ELSEWHERE or accuracy is None or math.isnan(accuracy) or chance is None
               or not at_most_chance(accuracy, chance))
    return RunSummary(folder.name, (folder / CONFIG).stat().st_mtime, config.get("preset", "?"),
                      config.get("optimizer", "?"), config.get("seed", 0), state, step,
                      None if accuracy is None or math.isnan(accuracy) else accuracy, labels,
                      note=f"{STATUS} is damaged: how the run ended is unknown" if status is None else None,
                      updated=status.get("updated") if state == TRAINING_ELSEWHERE else None, learned=learned,
                      watched_heads=tuple(config.get("model", {}).get("heads", {}).values()) if is_watched(config)
                      else None)


def _latest(folder: Path, heads: HeadCounts) -> dict[str, Any]:
    """The newest undamaged step, evaluation and specialization records, read from the end (a Runs page lists
    every run on every redraw)."""
    latest: dict[str, Any] = {}
    kinds = ("step", "eval", "specialization")
    for kind, point in read_records(folder, kinds, newest_first=True):
        if kind not in latest and _fits(kind, point, heads):
            latest[kind] = point
        if len(latest) == len(kinds):
            break
    return latest


_summaries: dict[Path, tuple[tuple, RunSummary]] = {}  # folder -> (its files' versions, its summary)
_summaries_lock = threading.Lock()


def _version(folder: Path) -> tuple:
    """What changes whenever a run's summary could: its files' modification times and sizes."""
    version: list = [folder.is_symlink()]
    for name in (CONFIG, STATUS, METRICS):
        try:
            info = (folder / name).lstat()
            version.append((info.st_mtime_ns, info.st_size))
        except OSError:
            version.append(None)
    return tuple(version)


def _summary(folder: Path) -> RunSummary:
    """summarize(folder), read again only when one of its files changed (the Runs page lists every run on every
    redraw; most are long finished)."""
    version = _version(folder)
    with _summaries_lock:
        cached = _summaries.get(folder)
    if cached is not None and cached[0] == version:
        return cached[1]
    summary = summarize(folder)
    with _summaries_lock:
        _summaries[folder] = (version, summary)
    return summary


def list_runs(runs_dir: Path) -> list[RunSummary]:
    """Every run folder under `runs_dir`, newest first; a link in place of a folder is listed as damaged."""
    if not runs_dir.is_dir():
        return []
    folders = [p for p in runs_dir.iterdir() if valid_run_id(p.name) and (p.is_symlink() or p.is_dir())
               and not _preparing(p)]
    with _summaries_lock:
        for gone in [f for f in _summaries if f.parent == runs_dir and f not in folders]:
            del _summaries[gone]
    return sorted((_still_training(_summary(p)) for p in folders), key=lambda s: s.started, reverse=True)


def _preparing(folder: Path) -> bool:
    """A new run's folder before its first file: nothing to list yet (its trainer is still making claims)."""
    return not folder.is_symlink() and not (folder / CONFIG).exists() and WriterLock.holder(folder) is not None


def _still_training(summary: RunSummary) -> RunSummary:
    """A run training elsewhere whose loop has stopped saying so (killed, say) is interrupted; its files may not
    change again, so this is checked on every listing, not only when they do."""
    if summary.status == TRAINING_ELSEWHERE and not _heard_lately(summary.updated):
        return replace(summary, status="interrupted")
    return summary
