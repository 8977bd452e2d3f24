"""Writing a run's folder as it trains: every file replaced atomically or appended, and the metrics flushed every
second, so a process killed at any moment leaves a folder that reads back (engine.runs.reading has the layout)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import io
import json
import math
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from engine.runs.layout import (
    ATTENTION,
    CHECKPOINT,
    CONFIG,
    FORMAT,
    FORMAT_KEY,
    MAX_TOKEN_CHARS,
    METRICS,
    PROBE,
    STATUS,
    TOKENIZER,
    WRITER_LOCK,
    attention_file,
)
from engine.runs.ending import Ending, ending_record, error_code
from engine.runs.reading import Record, RunError, encode_record
from engine.telemetry import AttentionPoint, ProbeClaim

FLUSH_SECONDS = 1.0
LOCK_PATIENCE_SECONDS = 2.0  # a page checking who writes a folder holds its lock for microseconds


class WriterLock:
    """One process's claim on a folder it writes (a run, a study), held until `release` or the process ends, however
    it ends (an flock: the system drops it then). A second writer, in this process or another, is refused in words,
    so two runs never mix in one folder and nothing is deleted under a process still writing it."""

    def __init__(self, folder: Path, name: str = WRITER_LOCK, what: str = "run") -> None:
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            raise RunError(f"{folder.name} is not a folder (or is a link to another place), so nothing is written "
                           "there")
        folder.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = _open_lock_file(folder / name)
        deadline = time.monotonic() + LOCK_PATIENCE_SECONDS
        while not _try_lock(self._fd, fcntl.LOCK_EX):
            if time.monotonic() > deadline:
                holder = _holder_id(self._fd)
                self.release()
                raise RunError(f"another process{f' ({holder})' if holder else ''} is writing the {what} in "
                               f"{folder.name}; it is left alone until that process ends")
            time.sleep(0.02)
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"process {os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor of the lock releases it
            self._fd = None

    @staticmethod
    def holder(folder: Path, name: str = WRITER_LOCK) -> str | None:
        """Who holds `folder`'s lock ("process 1234"), or None when nobody writes there now."""
        try:
            fd = os.open(folder / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None  # no lock file: never written by a Headwatch writer
        try:
            if _try_lock(fd, fcntl.LOCK_SH):
                return None
            return _holder_id(fd) or "a process"
        finally:
            os.close(fd)


def _open_lock_file(path: Path) -> int:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
            raise RunError(f"{path.name} in {path.parent.name} is not a plain file, so the folder is not "
                           "written") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RunError(f"{path.name} in {path.parent.name} is not a plain file, so the folder is not written")
    return fd


def _try_lock(fd: int, kind: int) -> bool:
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    if kind == fcntl.LOCK_SH:
        fcntl.flock(fd, fcntl.LOCK_UN)
    return True


def _holder_id(fd: int) -> str | None:
    """The 'process N' a lock's holder wrote into it (None when unreadable or not that)."""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        written = os.pread(fd, 64, 0).decode().strip()
        if written.startswith("process ") and written.removeprefix("process ").isdigit():
            return written
    return None


def empty_folder(folder: Path, keep: str = WRITER_LOCK) -> None:
    """Delete everything in `folder` but its lock file (held by the caller, so nothing else writes there now); links
    are removed, never followed."""
    for entry in folder.iterdir():
        if entry.name == keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def holds_only_its_lock(folder: Path) -> bool:
    return all(entry.name == WRITER_LOCK for entry in folder.iterdir())


def create_new_file(path: Path) -> BinaryIO:
    """A fresh file for writing at `path`, replacing whatever is there without following it: a link or a hard link
    planted in its place is removed, never written through."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    return os.fdopen(fd, "wb")


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
    atomic_write_bytes(path, _json_bytes(value))


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, indent=1, default=_json_default).encode()


def _overwrite_in_place(path: Path, data: bytes) -> None:
    """`data` written over the plain file at `path` (never through a link or a hard link), if it fits in the disk
    space the file already holds: a full disk has no room for the new file that atomic_write_bytes needs. Not atomic:
    a reader may catch it half written."""
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "wb") as file:
        held = os.fstat(file.fileno())
        if not stat.S_ISREG(held.st_mode) or held.st_nlink != 1 or len(data) > held.st_blocks * 512:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        file.write(data)
        file.truncate()
        file.flush()
        os.fsync(file.fileno())


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
    """A write that fails (disk full, folder removed) stops saving, never training: its code is kept in `failed`
    for the UI to say, and later writes are skipped."""

    @functools.wraps(method)
    def guarded(self: RunWriter, *args: Any, **kwargs: Any) -> None:
        if self.failed:
            return
        try:
            method(self, *args, **kwargs)
        except OSError as error:
            self.failed = error_code(error)

    return guarded


class RunWriter:
    """Writes one run's folder as it trains, holding its WriterLock (the one given, or its own) until `close`. The
    constructor raises OSError if the folder cannot be written, and RunError if another process writes there or it
    already holds files: two runs must never mix in one folder."""

    def __init__(self, folder: Path, config: dict, tokenizer: dict, probe: tuple[ProbeClaim, ...],
                 lock: WriterLock | None = None) -> None:
        self.folder = folder
        self.failed: str | None = None  # why its files stopped being written (engine.runs.ending.error_code)
        self.beside_failed: str | None = None  # why the TensorBoard files written beside them stopped
        self.chance: float | None = None  # Snapshot.chance, saved with the status
        self.commonest: str | None = None  # Snapshot.commonest, too
        self._lock = lock or WriterLock(folder)
        try:
            self._start(config, tokenizer, probe)
        except BaseException:
            self._lock.release()
            raise

    def _start(self, config: dict, tokenizer: dict, probe: tuple[ProbeClaim, ...]) -> None:
        folder = self.folder
        if not holds_only_its_lock(folder):
            raise RunError(f"the folder {folder.name} already holds files; a new run needs a new or empty folder")
        (folder / ATTENTION).mkdir()
        (folder / CHECKPOINT).parent.mkdir()
        atomic_write_json(folder / CONFIG, {FORMAT_KEY: FORMAT, **config})
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
        """The weights of a step, and before them (a reader finds them together) a watched run's tokens."""
        if point.tokens:
            atomic_write_json(self.folder / ATTENTION / attention_file(point.step, tokens=True),
                              {"tokens": [[token[:MAX_TOKEN_CHARS] for token in example] for example in point.tokens]})
        tensors = {name: torch.from_numpy(np.ascontiguousarray(w)).half() for name, w in point.weights.items()}
        atomic_write_bytes(self.folder / ATTENTION / attention_file(point.step), torch_bytes(tensors))

    @_unless_failed
    def checkpoint(self, state_dict: dict[str, torch.Tensor], step: int, model_config: dict) -> None:
        payload = {"step": step, "model": state_dict, "model_config": model_config}
        atomic_write_bytes(self.folder / CHECKPOINT, torch_bytes(payload))

    def status(self, status: str, step: int, seconds: float, ending: Ending | None = None) -> None:
        """Tried even after a write failed, so the folder says how the run ended and which of its files stopped
        partway: written over the last status when there is no room for a new file (a full disk)."""
        self._flush()
        facts = {"status": status, "step": step, "seconds": seconds, "updated": time.time(), "chance": self.chance,
                 "commonest": self.commonest}
        if ending is not None:
            facts |= ending_record(replace(ending, unsaved=self.unsaved))
        record = _json_bytes(facts)
        try:
            atomic_write_bytes(self.folder / STATUS, record)
        except OSError as error:
            try:
                _overwrite_in_place(self.folder / STATUS, record)
            except OSError:
                self.failed = self.failed or error_code(error)

    @property
    def unsaved(self) -> dict[str, str]:
        """The files that stopped being written (engine.runs.ending.FILES), and why."""
        return {files: why for files, why in (("run", self.failed), ("tensorboard", self.beside_failed)) if why}

    def close(self) -> None:
        try:
            self._metrics.close()
        except OSError as error:
            self.failed = self.failed or error_code(error)
        finally:
            self._lock.release()


def torch_bytes(obj: Any) -> bytes:
    """`obj` as torch.save writes it."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


