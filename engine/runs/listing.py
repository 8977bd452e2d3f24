"""Runs on disk: run ids and folders, listing and summarizing them, and discarding one (replaying one:
engine.runs.replay)."""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import stat
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from engine.cache import Cache
from engine.runs.formats import OtherFormat
from engine.runs.layout import (
    ATTENTION,
    CHECKPOINT,
    CONFIG,
    METRICS,
    STATUS,
    is_watched,
)
from engine.runs.reading import (
    RunError,
    read_config,
    read_records,
    read_status,
)
from engine.runs.replay import TRAINING_ELSEWHERE, HeadCounts, fits_heads, heard_lately, training_elsewhere
from engine.runs.writer import WriterLock
from engine.telemetry import ACTIVE_STATUSES, HeadSpecialization, at_most_chance

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
    heads: tuple[HeadSpecialization, ...]  # cross-attention heads of the last specialization record
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
        heads = cross[-1] if cross else ()
    except RunError as error:
        state = "other format" if isinstance(error, OtherFormat) else "damaged"  # not damaged: not for this version
        return RunSummary(folder.name, started, "?", "?", None, state, 0, None, (), str(error))
    state = "unknown" if status is None else status.get("status", "stopped")
    if state in ACTIVE_STATUSES:
        state = TRAINING_ELSEWHERE if training_elsewhere(config, status) else "interrupted"
    chance = (status or {}).get("chance")
    learned = (state == TRAINING_ELSEWHERE or accuracy is None or math.isnan(accuracy) or chance is None
               or not at_most_chance(accuracy, chance))
    return RunSummary(folder.name, (folder / CONFIG).stat().st_mtime, config.get("preset", "?"),
                      config.get("optimizer", "?"), config.get("seed", 0), state, step,
                      None if accuracy is None or math.isnan(accuracy) else accuracy, heads,
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
        if kind not in latest and fits_heads(kind, point, heads):
            latest[kind] = point
        if len(latest) == len(kinds):
            break
    return latest


# The Runs page lists every run on every redraw, and most are long finished. Beyond this many runs a listing reads
# every one again (correct, only slower).
_SUMMARIES: Cache[RunSummary] = Cache("run summaries", max_entries=4096, key=("folder",))


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
    """summarize(folder), read again only when one of its files changed."""
    return _SUMMARIES.get(partial(summarize, folder), version=_version(folder), folder=folder)


def list_runs(runs_dir: Path) -> list[RunSummary]:
    """Every run folder under `runs_dir`, newest first; a link in place of a folder is listed as damaged."""
    if not runs_dir.is_dir():
        return []
    folders = [p for p in runs_dir.iterdir() if valid_run_id(p.name) and (p.is_symlink() or p.is_dir())
               and not _preparing(p)]
    return sorted((_still_training(_summary(p)) for p in folders), key=lambda s: s.started, reverse=True)


def _preparing(folder: Path) -> bool:
    """A new run's folder before its first file: nothing to list yet (its trainer is still making claims)."""
    return not folder.is_symlink() and not (folder / CONFIG).exists() and WriterLock.holder(folder) is not None


def _still_training(summary: RunSummary) -> RunSummary:
    """A run training elsewhere whose loop has stopped saying so (killed, say) is interrupted; its files may not
    change again, so this is checked on every listing, not only when they do."""
    if summary.status == TRAINING_ELSEWHERE and not heard_lately(summary.updated):
        return replace(summary, status="interrupted")
    return summary
