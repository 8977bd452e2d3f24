"""Runs on disk: one folder per run, append-only metrics, atomic checkpoints, replay into a Snapshot.

Layout of a run folder:
  config.json        the TrainConfig (with its ModelConfig)
  tokenizer.json     the vocabulary the weights belong to
  status.json        last known status (atomic replace)
  metrics.jsonl      one JSON object a line: step, eval, optim, specialization records (flushed every second)
  attention/step_NNNNNNN.pt   probe-batch attention weights at log-spaced steps
  checkpoints/latest.pt       model state_dict + step (atomic replace; loaded with weights_only=True)
"""

from __future__ import annotations

import functools
import io
import json
import math
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.telemetry import (
    AttentionPoint,
    Downsampler,
    EvalPoint,
    HeadSpecialization,
    OptimPoint,
    OptimStats,
    ProbeClaim,
    Snapshot,
    SpecializationPoint,
    thin,
)

RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
FLUSH_SECONDS = 1.0


class RunError(ValueError):
    """A run folder, run id or checkpoint that cannot be used; the message says why in plain words."""


def default_runs_dir() -> Path:
    return Path(os.environ.get("HEADWATCH_RUNS_DIR") or Path.cwd() / "runs")


def resolve_run(runs_dir: Path, run_id: str) -> Path:
    """The folder of `run_id` inside `runs_dir`; ids that could escape the folder are refused."""
    if not RUN_ID_PATTERN.match(run_id) or ".." in run_id:
        raise RunError(f"'{run_id}' is not a valid run id (letters, digits, '.', '_' and '-' only)")
    path = (runs_dir / run_id).resolve()
    if path.parent != runs_dir.resolve():
        raise RunError(f"'{run_id}' is outside the runs folder")
    return path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, value: Any) -> None:
    atomic_write_bytes(path, json.dumps(value, indent=1, default=_json_default).encode())


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in JSON")


def _clean(value: Any) -> Any:
    """NaN and infinity are not JSON: store them as null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _unless_failed(method: Callable) -> Callable:
    """A write that fails (disk full, folder removed) stops saving, never training: the error is kept in
    `failed` for the UI to show, and later writes are skipped."""

    @functools.wraps(method)
    def guarded(self: RunWriter, *args: Any, **kwargs: Any) -> None:
        if self.failed:
            return
        try:
            method(self, *args, **kwargs)
        except OSError as error:
            self.failed = f"{error.strerror or error} ({self.folder})"

    return guarded


class RunWriter:
    """Writes one run's folder as it trains. The constructor raises OSError if the folder cannot be written."""

    def __init__(self, folder: Path, config: dict, tokenizer: dict, probe: tuple[ProbeClaim, ...]) -> None:
        self.folder = folder
        self.failed: str | None = None
        self.checkpoint_step: int | None = None  # step of the last checkpoint written whole
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "attention").mkdir(exist_ok=True)
        (folder / "checkpoints").mkdir(exist_ok=True)
        atomic_write_json(folder / "config.json", config)
        atomic_write_json(folder / "tokenizer.json", tokenizer)
        atomic_write_json(folder / "probe.json", [asdict(p) for p in probe])
        self._metrics = open(folder / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115 (held for the run)
        self._last_flush = time.monotonic()

    @_unless_failed
    def log(self, record: dict) -> None:
        self._metrics.write(json.dumps(_clean(record)) + "\n")
        if time.monotonic() - self._last_flush >= FLUSH_SECONDS:
            self._metrics.flush()
            self._last_flush = time.monotonic()

    @_unless_failed
    def flush(self) -> None:
        self._metrics.flush()
        self._last_flush = time.monotonic()

    def log_eval(self, point: EvalPoint) -> None:
        self.log({"type": "eval", **asdict(point)})

    def log_optim(self, point: OptimPoint) -> None:
        self.log({"type": "optim", **asdict(point)})

    def log_specialization(self, point: SpecializationPoint) -> None:
        self.log({"type": "specialization", **asdict(point)})

    @_unless_failed
    def save_attention(self, point: AttentionPoint) -> None:
        tensors = {name: torch.from_numpy(np.ascontiguousarray(w)).half() for name, w in point.weights.items()}
        atomic_write_bytes(self.folder / "attention" / f"step_{point.step:09d}.pt", _to_bytes(tensors))

    @_unless_failed
    def checkpoint(self, state_dict: dict[str, torch.Tensor], step: int, model_config: dict) -> None:
        payload = {"step": step, "model": state_dict, "model_config": model_config}
        atomic_write_bytes(self.folder / "checkpoints" / "latest.pt", _to_bytes(payload))
        self.checkpoint_step = step

    @_unless_failed
    def status(self, status: str, message: str, step: int, seconds: float) -> None:
        self._metrics.flush()
        atomic_write_json(self.folder / "status.json",
                          {"status": status, "message": message, "step": step, "seconds": seconds,
                           "updated": time.time()})

    def close(self) -> None:
        try:
            self._metrics.close()
        except OSError as error:
            self.failed = self.failed or str(error)


def _to_bytes(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{path.name} is missing in {path.parent}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RunError(f"{path.name} in {path.parent} is damaged: {error}") from None


def read_metrics(folder: Path) -> list[dict]:
    """All complete records; a torn last line (the process was killed mid-write) is skipped."""
    records = []
    path = folder / "metrics.jsonl"
    if not path.exists():
        return records
    with open(path, encoding="utf-8", errors="replace") as file:
        for line in file:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def load_checkpoint(path: Path) -> dict:
    """A checkpoint's {"step", "model"}; refuses anything that is not plain tensors (weights_only=True)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise RunError(f"no checkpoint at {path}") from None
    except Exception as error:  # torch raises many types for damaged or unsafe files
        raise RunError(f"checkpoint {path.name} cannot be loaded safely: {str(error).splitlines()[0]}") from None
    if not isinstance(payload, dict) or "model" not in payload or not isinstance(payload["model"], dict):
        raise RunError(f"checkpoint {path.name} does not hold a Headwatch model")
    return payload


def _float(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _eval_point(record: dict) -> EvalPoint:
    return EvalPoint(
        step=record["step"], seconds=_float(record["seconds"]), train_loss=_float(record["train_loss"]),
        heldout_loss=_float(record["heldout_loss"]), train_accuracy=_float(record["train_accuracy"]),
        heldout_accuracy=_float(record["heldout_accuracy"]),
        train_per_class={k: _float(v) for k, v in record["train_per_class"].items()},
        heldout_per_class={k: _float(v) for k, v in record["heldout_per_class"].items()},
    )


def _optim_point(record: dict) -> OptimPoint:
    return OptimPoint(
        step=record["step"],
        heads={name: tuple(OptimStats(**s) for s in heads) for name, heads in record["heads"].items()},
        groups={name: OptimStats(**s) for name, s in record["groups"].items()},
    )


def _specialization_point(record: dict) -> SpecializationPoint:
    return SpecializationPoint(
        step=record["step"],
        heads={name: tuple(HeadSpecialization(**h) for h in heads) for name, heads in record["heads"].items()},
    )


def load_attention(folder: Path) -> list[AttentionPoint]:
    points = []
    for path in sorted((folder / "attention").glob("step_*.pt")):
        try:
            tensors = torch.load(path, map_location="cpu", weights_only=True)
            step = int(path.stem.split("_")[1])
        except Exception:  # a half-written or damaged snapshot is skipped, not fatal
            continue
        points.append(AttentionPoint(step, {name: t.float().numpy() for name, t in tensors.items()}))
    return points


def replay(folder: Path) -> Snapshot:
    """A saved run as a read-only Snapshot, for every page's replay."""
    config = read_json(folder / "config.json")
    status = read_json(folder / "status.json") if (folder / "status.json").exists() else {}
    probe = tuple(ProbeClaim(p["text"], p["label"], tuple(p["tokens"]), tuple(p["categories"]))
                  for p in read_json(folder / "probe.json"))
    loss, evals, optim, specialization = Downsampler(), [], [], []
    last_step, seconds = 0, 0.0
    for record in read_metrics(folder):
        kind = record.get("type")
        try:
            if kind == "step":
                loss.append(record["step"], _float(record["loss"]))
                last_step, seconds = record["step"], _float(record["seconds"])
            elif kind == "eval":
                evals = thin([*evals, _eval_point(record)], 1000)
            elif kind == "optim":
                optim = thin([*optim, _optim_point(record)], 1000)
            elif kind == "specialization":
                specialization.append(_specialization_point(record))
        except (KeyError, TypeError, ValueError):
            continue
    attention = load_attention(folder)
    names = tuple(attention[-1].weights) if attention else ()
    run_status = status.get("status", "stopped")
    if run_status in ("preparing", "running", "paused"):
        run_status, message = "stopped", "The server stopped while this run was training; shown up to its last save."
    else:
        message = status.get("message", "")
    return Snapshot(
        version=1, run_id=folder.name, run_dir=str(folder), status=run_status, message=message,
        step=last_step, total_steps=int(config.get("steps", last_step)), seconds=seconds, config=config,
        loss=loss.series(), evals=tuple(evals), optim=tuple(optim), attention=tuple(attention),
        specialization=tuple(specialization), probe=probe, attention_names=names,
        n_heads=int(config.get("model", {}).get("n_heads", 4)), read_only=True,
    )


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    started: float  # seconds since the epoch (folder creation)
    preset: str
    optimizer: str
    seed: int
    status: str
    step: int
    accuracy: float | None
    head_labels: tuple[str, ...]  # cross-attention heads of the last specialization record
    problem: str | None = None  # why the folder cannot be opened, if it cannot


def summarize(folder: Path) -> RunSummary:
    """One line about a run; a damaged folder gives a summary with `problem` set instead of an exception."""
    started = folder.stat().st_mtime
    try:
        config = read_json(folder / "config.json")
    except RunError as error:
        return RunSummary(folder.name, started, "?", "?", 0, "damaged", 0, None, (), str(error))
    status = {}
    if (folder / "status.json").exists():
        try:
            status = read_json(folder / "status.json")
        except RunError:
            status = {}
    accuracy, labels, step = None, (), int(status.get("step", 0))
    for record in read_metrics(folder):
        if record.get("type") == "eval":
            accuracy, step = record.get("heldout_accuracy"), max(step, int(record.get("step", 0)))
        elif record.get("type") == "specialization":
            cross = [heads for name, heads in record.get("heads", {}).items() if name.endswith(".cross")]
            labels = tuple(h.get("label", "?") for h in cross[-1]) if cross else labels
    state = status.get("status", "stopped")
    if state in ("preparing", "running", "paused"):
        state = "interrupted"
    return RunSummary(folder.name, (folder / "config.json").stat().st_mtime, str(config.get("preset", "?")),
                      str(config.get("optimizer", "?")), int(config.get("seed", 0)), state, step, accuracy, labels)


def list_runs(runs_dir: Path) -> list[RunSummary]:
    """Every run folder under `runs_dir`, newest first."""
    if not runs_dir.is_dir():
        return []
    folders = [p for p in runs_dir.iterdir() if p.is_dir() and RUN_ID_PATTERN.match(p.name)]
    return sorted((summarize(p) for p in folders), key=lambda s: s.started, reverse=True)
