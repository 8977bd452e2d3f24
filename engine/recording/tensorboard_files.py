"""TensorBoard event files beside a run's own files (`tensorboard/` in its folder), for whoever reads runs there:
`tensorboard --logdir runs/`. An observer like the run's writer: Headwatch's own runs and watched ones
(engine.recording.watch) send it the same events. Scalars: the loss, held-out loss and accuracy (overall and per class),
a watched loop's own metrics, and each attention head's optimizer statistics; images: each head's attention on the first
captured claim (or example), at the steps attention is saved; text: what each head was found to do."""

from __future__ import annotations

import contextlib
import io
import logging
import re
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engine.interpret.labels import head_label
from engine.recording.events import Event, RunWarning, Status
from engine.runs.ending import UNEXPECTED, error_code
from engine.runs.layout import TENSORBOARD
from engine.runs.reading import RunError, open_in_run
from engine.runs.words import why
from engine.telemetry import (
    ENDED_STATUSES,
    OPTIM_MEASURES,
    AttentionPoint,
    EvalPoint,
    MetricsPoint,
    OptimPoint,
    OptimStats,
    SpecializationPoint,
    StepPoint,
)

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

    from engine.runs.writer import RunWriter

FLUSH_SECONDS = 5  # TensorBoard reloads its files every few seconds; a live run shows up about as fast
CELL_PIXELS = 8  # a head's attention image gives each (query, key) pair a square this wide: readable in TensorBoard
MAX_IMAGE_PIXELS = 512  # ... up to this wide and high: long sequences get smaller squares
EMPTY_RGB, FULL_RGB = np.array([255, 255, 255]), np.array([31, 78, 140])  # weight 0 -> white, weight 1 -> dark blue
EVENT_FILE = re.compile(r"events\.out\.tfevents\.[A-Za-z0-9_.-]{1,200}")  # the names SummaryWriter gives its files
MAX_EXPORT_BYTES = 256 * 2**20  # a download of a run's event files; a 10,000-step watched run writes a few MB
LEFT_OUT = "left out.txt"  # in an export's archive: the event files it does not hold, and why


def attention_image(weights: np.ndarray) -> np.ndarray:
    """One head's (Tq, Tk) attention weights as an RGB image (H, W, 3), uint8: a square per pair, white at 0, dark
    blue at 1, on the weights' own scale (not stretched to the largest one)."""
    shade = np.clip(np.nan_to_num(weights.astype(np.float64)), 0.0, 1.0)[..., None]
    cells = np.round(EMPTY_RGB + shade * (FULL_RGB - EMPTY_RGB)).astype(np.uint8)  # (Tq, Tk, 3)
    pixels = max(1, min(CELL_PIXELS, MAX_IMAGE_PIXELS // max(weights.shape)))
    return cells.repeat(pixels, axis=0).repeat(pixels, axis=1)


def without_padding(weights: np.ndarray) -> np.ndarray:
    """(Tq, Tk) weights without the padding keys at the end (masked: exactly 0 from every query), and, for
    self-attention, without the padding queries either."""
    keys = weights.shape[1] - int(np.argmax(weights[:, ::-1].any(axis=0))) if weights.any() else weights.shape[1]
    queries = keys if weights.shape[0] == weights.shape[1] else weights.shape[0]
    return weights[:queries, :keys]


class TensorBoardObserver:
    """Writes a run's events as TensorBoard event files into its folder's `tensorboard/`; a failure to write stops
    these files only (the run trains and saves on), `on_failed` hears of it once, and so does the run's writer, when
    given, for the status it saves. Heard before that writer, its files are complete before the status says so."""

    def __init__(
        self,
        run_folder: Path,
        on_failed: Callable[[RunWarning], None] = lambda warning: None,
        run_writer: RunWriter | None = None,
    ) -> None:
        self.on_failed, self.run_writer = on_failed, run_writer
        self.failed: str | None = None  # why its files stopped (engine.runs.ending.error_code)
        self._writer: SummaryWriter | None = None
        from torch.utils.tensorboard import SummaryWriter  # here: it takes 0.2 s to import, and few runs ask for it

        _quiet_writer_threads()
        try:
            self._writer = SummaryWriter(log_dir=str(run_folder / TENSORBOARD), flush_secs=FLUSH_SECONDS)
        except Exception as error:  # as in hear
            self._fail(_reason(error))

    def hear(self, event: Event) -> None:
        if self._writer is None:
            return
        try:
            self._write(self._writer, event)
        except Exception as error:  # TensorBoard's files are extra: whatever goes wrong there, training goes on
            self._fail(_reason(error))

    def _write(self, writer: SummaryWriter, event: Event) -> None:
        match event:
            case StepPoint():
                writer.add_scalar("loss/train", event.loss, event.step)
            case EvalPoint():
                _write_eval(writer, event)
            case MetricsPoint():
                for name, value in event.values.items():
                    writer.add_scalar(f"your metrics/{name}", value, event.step)
            case OptimPoint():
                _write_optim(writer, event)
            case AttentionPoint():
                for name, weights in event.weights.items():
                    for head in range(weights.shape[1]):
                        image = attention_image(without_padding(weights[0, head]))
                        writer.add_image(f"attention/{name} head {head + 1}", image, event.step, dataformats="HWC")
            case SpecializationPoint():
                for name, heads in event.heads.items():
                    lines = [f"- head {h + 1}: {head_label(spec)}" for h, spec in enumerate(heads)]
                    writer.add_text(f"heads/{name}", "\n".join(lines), event.step)
            case Status(status=status) if status in ENDED_STATUSES:
                self.close()

    def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.close()
            except Exception as error:  # as in hear
                self._fail(_reason(error))

    def _fail(self, reason: str) -> None:
        logging.getLogger("headwatch").warning("TensorBoard files stopped being written: %s", why(reason))
        writer, self._writer, self.failed = self._writer, None, reason
        if self.run_writer is not None:
            self.run_writer.beside_failed = reason
        with contextlib.suppress(Exception):  # its file and thread go, whatever state they are in
            if writer is not None:
                writer.close()
        self.on_failed(RunWarning("tensorboard", reason))


def event_files(run_folder: Path) -> list[str]:
    """The names of the TensorBoard event files in a run's folder (its `tensorboard/`, not followed if a link)."""
    folder = run_folder / TENSORBOARD
    if folder.is_symlink() or not folder.is_dir():
        return []
    try:
        return sorted(entry.name for entry in folder.iterdir() if EVENT_FILE.fullmatch(entry.name))
    except OSError:  # a folder this process may not read holds nothing it can export
        return []


def event_files_zip(run_folder: Path) -> bytes:
    """A run's TensorBoard event files as a zip archive (`tensorboard/<file>`), read as any run file is (plain files
    inside its folder, bounded in size); the files it cannot hold are named in its `left out.txt`, with why."""
    buffer, budget, left_out = io.BytesIO(), MAX_EXPORT_BYTES, []
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in event_files(run_folder):
            try:
                with open_in_run(run_folder, f"{TENSORBOARD}/{name}") as file:
                    data = file.read(budget + 1)
            except (RunError, OSError) as error:
                left_out.append(f"{name}: {error if isinstance(error, RunError) else 'it cannot be read'}")
                continue
            if len(data) > budget:
                left_out.append(
                    f"{name}: the archive holds at most {MAX_EXPORT_BYTES // 2**20} MB of event files; "
                    "read it in the run's folder"
                )
                continue
            budget -= len(data)
            archive.writestr(f"{TENSORBOARD}/{name}", data)
        if left_out:
            archive.writestr(
                LEFT_OUT, "Event files of this run that are not in this archive:\n" + "\n".join(left_out) + "\n"
            )
    return buffer.getvalue()


def _quiet_writer_threads() -> None:
    """TensorBoard's writer thread dies with a traceback on stderr when a write fails; the observer finds that
    failure at its next write and reports it in words, so those tracebacks are left out (no other thread's)."""
    from tensorboard.summary.writer.event_file_writer import _AsyncWriterThread

    shown = threading.excepthook
    if getattr(shown, "quiets", None) is _AsyncWriterThread:
        return

    def hook(args: threading.ExceptHookArgs) -> None:
        if not isinstance(args.thread, _AsyncWriterThread):
            shown(args)

    hook.quiets = _AsyncWriterThread
    threading.excepthook = hook


def _reason(error: Exception) -> str:
    """Why the files stopped, as a code (engine.runs.ending.error_code); an error that is no file's goes to the log."""
    code = error_code(error)
    if code == UNEXPECTED:
        logging.getLogger("headwatch").error("TensorBoard files failed", exc_info=error)
    return code


def _write_eval(writer: SummaryWriter, point: EvalPoint) -> None:
    writer.add_scalar("loss/held-out", point.heldout_loss, point.step)
    writer.add_scalar("accuracy/held-out", point.heldout_accuracy, point.step)
    writer.add_scalar("accuracy/train", point.train_accuracy, point.step)
    for label, accuracy in point.heldout_per_class.items():
        writer.add_scalar(f"held-out accuracy by class/{label}", accuracy, point.step)


def _write_optim(writer: SummaryWriter, point: OptimPoint) -> None:
    for name, heads in point.heads.items():
        for head, stats in enumerate(heads):
            _write_stats(writer, f"{name} head {head + 1}", stats, point.step)
    for group, stats in point.groups.items():
        _write_stats(writer, group, stats, point.step)


def _write_stats(writer: SummaryWriter, who: str, stats: OptimStats, step: int) -> None:
    for field, (measure, symbol) in OPTIM_MEASURES.items():
        value = getattr(stats, field)
        if value is not None:
            writer.add_scalar(f"{measure} ({symbol})/{who}", value, step)
