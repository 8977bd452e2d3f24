"""Writing a run's folder as it trains: every file replaced atomically or appended, and the metrics flushed every
second, so a process killed at any moment leaves a folder that reads back (engine.run_files has the layout)."""

from __future__ import annotations

import functools
import io
import json
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.run_files import (
    ATTENTION,
    CHECKPOINT,
    CONFIG,
    METRICS,
    PROBE,
    STATUS,
    TOKENIZER,
    Record,
    RunError,
    encode_record,
)
from engine.telemetry import AttentionPoint, ProbeClaim

FLUSH_SECONDS = 1.0


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
            self.failed = error.strerror or "the files could not be written"

    return guarded


class RunWriter:
    """Writes one run's folder as it trains. The constructor raises OSError if the folder cannot be written, and
    RunError if it already holds files: two runs must never mix in one folder."""

    def __init__(self, folder: Path, config: dict, tokenizer: dict, probe: tuple[ProbeClaim, ...]) -> None:
        self.folder = folder
        self.failed: str | None = None
        self.chance: float | None = None  # Snapshot.chance, saved with the status
        folder.mkdir(parents=True, exist_ok=True)
        if any(folder.iterdir()):
            raise RunError(f"the folder {folder.name} already holds files; a new run needs a new or empty folder")
        (folder / ATTENTION).mkdir()
        (folder / CHECKPOINT).parent.mkdir()
        atomic_write_json(folder / CONFIG, config)
        atomic_write_json(folder / TOKENIZER, tokenizer)
        atomic_write_json(folder / PROBE, [asdict(p) for p in probe])
        self._metrics = open(folder / METRICS, "x", encoding="utf-8")  # noqa: SIM115 (held for the run)
        self._last_flush = time.monotonic()

    @_unless_failed
    def record(self, point: Record) -> None:
        """One measurement appended to metrics.jsonl (flushed at most a second later)."""
        self._metrics.write(json.dumps(_clean(encode_record(point))) + "\n")
        if time.monotonic() - self._last_flush >= FLUSH_SECONDS:
            self._flush()

    @_unless_failed
    def _flush(self) -> None:
        self._metrics.flush()
        self._last_flush = time.monotonic()

    @_unless_failed
    def save_attention(self, point: AttentionPoint) -> None:
        tensors = {name: torch.from_numpy(np.ascontiguousarray(w)).half() for name, w in point.weights.items()}
        atomic_write_bytes(self.folder / ATTENTION / f"step_{point.step:09d}.pt", torch_bytes(tensors))

    @_unless_failed
    def checkpoint(self, state_dict: dict[str, torch.Tensor], step: int, model_config: dict) -> None:
        payload = {"step": step, "model": state_dict, "model_config": model_config}
        atomic_write_bytes(self.folder / CHECKPOINT, torch_bytes(payload))

    def status(self, status: str, message: str, step: int, seconds: float) -> None:
        """Tried even after a write failed (space may have come back), so the folder says how the run ended and
        that its files stopped partway."""
        self._flush()
        if self.failed:
            message = f"{message}. Its files stopped being saved partway ({self.failed})"
        try:
            atomic_write_json(self.folder / STATUS, {"status": status, "message": message, "step": step,
                                                     "seconds": seconds, "updated": time.time(),
                                                     "chance": self.chance})
        except OSError as error:
            self.failed = self.failed or error.strerror or "the files could not be written"

    def close(self) -> None:
        try:
            self._metrics.close()
        except OSError as error:
            self.failed = self.failed or str(error)


def torch_bytes(obj: Any) -> bytes:
    """`obj` as torch.save writes it."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


