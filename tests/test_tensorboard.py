"""TensorBoard files beside a run's own, read back with TensorBoard's own event reader: what TensorBoard will show."""

from __future__ import annotations

import errno
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.tensorflow_stub.io.gfile import LocalFileSystem
from test_watch import HEADS, model_and_optimizer, train

from engine.recording.attention_modules import attention_modules
from engine.recording.events import RunWarning
from engine.recording.tensorboard_files import (
    CELL_PIXELS,
    LEFT_OUT,
    TensorBoardObserver,
    attention_image,
    event_files,
    event_files_zip,
    without_padding,
)
from engine.recording.watch import watch
from engine.runs.layout import TENSORBOARD
from engine.runs.listing import list_runs
from engine.runs.replay import replay
from engine.runs.words import warning_text
from engine.telemetry import AttentionPoint, StepPoint

ROOT = Path(__file__).resolve().parents[1]


def read_events(run_folder: Path) -> EventAccumulator:
    events = EventAccumulator(str(run_folder / TENSORBOARD), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    return events


def decoded(image_event) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(image_event.encoded_image_string)).convert("RGB"))


def test_an_attention_image_shows_the_weights_on_their_own_scale() -> None:
    weights = np.array([[0.0, 1.0], [0.5, 0.25]], dtype=np.float32)
    image = attention_image(weights)
    assert image.shape == (2 * CELL_PIXELS, 2 * CELL_PIXELS, 3) and image.dtype == np.uint8
    cell = {(q, k): image[q * CELL_PIXELS + 3, k * CELL_PIXELS + 5] for q in range(2) for k in range(2)}
    assert cell[0, 0].tolist() == [255, 255, 255]  # nothing: white
    assert cell[0, 1].tolist() == [31, 78, 140]  # everything: dark blue
    assert cell[1, 0].tolist() == [143, 166, 198]  # half way, rounded: (255 + 31) / 2, (255 + 78) / 2, ...
    assert cell[1, 1].tolist() == [199, 211, 226]


def test_a_watched_run_shows_in_tensorboard_what_headwatch_recorded(tmp_path: Path) -> None:
    model, optimizer = model_and_optimizer()
    with watch(model, optimizer, tmp_path / "mine", every=5, tensorboard=True) as watcher:
        losses = train(model, optimizer, 20, watcher, metrics=True)
    events, snap = read_events(tmp_path / "mine"), replay(tmp_path / "mine")
    loss = events.Scalars("loss/train")
    assert [e.step for e in loss] == list(range(1, 21)) and [e.value for e in loss] == pytest.approx(losses)
    assert [e.step for e in events.Scalars("your metrics/mean error")] == list(range(1, 21))
    name = "0.layers.1.self_attn"
    assert name in attention_modules(model)
    for head in range(HEADS):
        momentum = events.Scalars(f"momentum (mean |m|)/{name} head {head + 1}")  # numbered from 1, as on the pages
        assert [e.step for e in momentum] == [p.step for p in snap.optim]
        assert [e.value for e in momentum] == pytest.approx([p.heads[name][head].mean_abs_m for p in snap.optim])
        images = events.Images(f"attention/{name} head {head + 1}")
        saved = sorted((tmp_path / "mine" / "attention").glob("step_*.pt"))
        assert [e.step for e in images] == [int(p.stem.split("_")[1]) for p in saved]
        first = torch.load(saved[-1])[name][0, head].float().numpy()  # the first example, saved in half precision
        shown = decoded(images[-1]).astype(int) - attention_image(first)
        assert shown.shape == (5 * CELL_PIXELS, 5 * CELL_PIXELS, 3) and np.abs(shown).max() <= 1
    [listed] = list_runs(tmp_path)  # the TensorBoard folder is no run of its own, and does not hide this one
    assert (listed.run_id, listed.status) == ("mine", "finished")


def test_a_run_without_the_setting_writes_no_tensorboard_files(tmp_path: Path) -> None:
    model, optimizer = model_and_optimizer()
    with watch(model, optimizer, tmp_path / "mine", every=5) as watcher:
        train(model, optimizer, 5, watcher)
    assert not (tmp_path / "mine" / TENSORBOARD).exists()


def test_tensorboard_files_that_cannot_be_written_say_so_and_stop_only_themselves(tmp_path: Path) -> None:
    (tmp_path / TENSORBOARD).write_text("a file where the folder should be")
    heard: list[RunWarning] = []
    observer = TensorBoardObserver(tmp_path, heard.append)
    observer.hear(StepPoint(1, 0.5, 0.1))  # nothing to write into: ignored, not raised
    assert observer.failed and len(heard) == 1
    said = warning_text(heard[0].files, heard[0].error)
    assert said.startswith("Training goes on, but its TensorBoard files are no longer written")


def test_padding_is_cut_off_and_long_sequences_fit_a_readable_image() -> None:
    weights = np.zeros((4, 4), dtype=np.float32)
    weights[:3, :3] = 1 / 3  # three real tokens; the fourth is padding, masked: no query gives it anything
    assert without_padding(weights).shape == (3, 3)
    cross = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])  # two answer positions look at two real tokens
    assert without_padding(cross).shape == (2, 2)
    assert attention_image(np.full((512, 512), 0.01)).shape == (512, 512, 3)  # one pixel a pair, not 4096 pixels


def test_any_error_in_tensorboard_writing_stops_only_those_files(tmp_path: Path) -> None:
    heard: list[RunWarning] = []
    observer = TensorBoardObserver(tmp_path, heard.append)
    observer.hear(AttentionPoint(1, {"odd": np.ones((2, 3))}))  # not (examples, heads, queries, keys)
    observer.hear(StepPoint(2, 0.5, 0.1))
    assert observer.failed and [warning_text(w.files, w.error) for w in heard] == [
        "Training goes on, but its TensorBoard files are no longer written: an unexpected error (its details are in "
        "the log of the process that trained it)"
    ]


def full_disk_for_tensorboard(self: object, filename: object, content: bytes, binary_mode: bool = False) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_tensorboard_run_on_a_full_disk_ends_saying_its_files_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """The disk fills once the run has started: no new file can be made (status.json is one), events no longer
    append, and the run still ends with a status that says so."""
    import engine.runs.writer as runs
    from engine.__main__ import main

    real, full = runs.atomic_write_bytes, False

    def full_disk(path: Path, data: bytes) -> None:
        nonlocal full
        if full:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)
        full = path.name == "status.json"  # the run has started

    monkeypatch.setattr(runs, "atomic_write_bytes", full_disk)
    monkeypatch.setattr(LocalFileSystem, "append", full_disk_for_tensorboard)
    code = main(["train", "--out", str(tmp_path / "full"), "--preset", "quick", "--steps", "40", "--tensorboard"])
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert code == 1 and summary["save_problem"] == "No space left on device"
    status = json.loads((tmp_path / "full" / "status.json").read_text())
    assert status["status"] == "finished" and status["step"] == 40
    assert status["unsaved"] == {"run": "ENOSPC", "tensorboard": "ENOSPC"}  # facts on disk, said in words when read
    assert replay(tmp_path / "full").message.endswith(
        "Its files stopped being saved partway (No space left on device; TensorBoard files: No space left on device)"
    )


@pytest.mark.slow
def test_tensorboard_files_that_stop_are_named_in_the_status_without_a_traceback(tmp_path: Path) -> None:
    """Only the event files fail: the run's own are whole, its status names the TensorBoard files, and the command
    says so in words (TensorBoard's writer thread would print a traceback)."""
    full_tensorboard = (
        "import sys; from tensorboard.compat.tensorflow_stub.io.gfile import LocalFileSystem; "
        "from test_tensorboard import full_disk_for_tensorboard; "
        "LocalFileSystem.append = full_disk_for_tensorboard; from engine.__main__ import main; "
        "sys.exit(main(sys.argv[1:]))"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            full_tensorboard,
            "train",
            "--out",
            str(tmp_path / "run"),
            "--preset",
            "quick",
            "--steps",
            "40",
            "--tensorboard",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT / "tests")},
    )
    assert "Traceback" not in result.stderr
    summary = json.loads(result.stdout.splitlines()[-1])
    assert result.returncode == 1 and summary["saved"] and not summary["tensorboard_saved"]
    assert summary["tensorboard_problem"] == "TensorBoard files: No space left on device"
    assert "TensorBoard files stopped being written: No space left on device" in result.stderr
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["status"] == "finished" and status["unsaved"] == {"tensorboard": "ENOSPC"}
    assert replay(tmp_path / "run").message.endswith(
        "Its files stopped being saved partway (TensorBoard files: No space left on device)"
    )


def test_a_watched_runs_tensorboard_files_that_stop_are_named_in_its_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As for a run trained here: the disk fills for TensorBoard's files, the loop trains on, and the run's
    status says which files stopped."""
    monkeypatch.setattr(LocalFileSystem, "append", full_disk_for_tensorboard)
    model, optimizer = model_and_optimizer()
    with watch(model, optimizer, tmp_path / "mine", every=5, tensorboard=True) as watcher:
        train(model, optimizer, 10, watcher)
    status = json.loads((tmp_path / "mine" / "status.json").read_text())
    assert (status["status"], status["step"], status["unsaved"]) == ("finished", 10, {"tensorboard": "ENOSPC"})
    assert replay(tmp_path / "mine").message == (
        "Finished 10 steps. Its files stopped being saved partway (TensorBoard files: No space left on device)"
    )


def test_an_export_of_event_files_holds_only_the_runs_own_and_names_the_rest(tmp_path: Path) -> None:
    """A hostile run folder: a link to a file elsewhere is named as left out, never read; other files are not
    event files and are not offered."""
    run = tmp_path / "run"
    (run / TENSORBOARD).mkdir(parents=True)
    (run / TENSORBOARD / "events.out.tfevents.1.host.2.0").write_bytes(b"events")
    (tmp_path / "secret").write_text("not the run's")
    (run / TENSORBOARD / "events.out.tfevents.9.host.9.9").symlink_to(tmp_path / "secret")
    (run / TENSORBOARD / "notes.txt").write_text("not an event file")
    assert event_files(run) == ["events.out.tfevents.1.host.2.0", "events.out.tfevents.9.host.9.9"]
    with zipfile.ZipFile(io.BytesIO(event_files_zip(run))) as archive:
        assert archive.namelist() == ["tensorboard/events.out.tfevents.1.host.2.0", LEFT_OUT]
        assert archive.read(LEFT_OUT).decode().splitlines()[1] == (
            "events.out.tfevents.9.host.9.9: tensorboard/events.out.tfevents.9.host.9.9 is a link to a file outside "
            "its run folder, so it is not read"
        )
    (run / TENSORBOARD).rename(tmp_path / "elsewhere")
    (run / TENSORBOARD).symlink_to(tmp_path / "elsewhere")
    assert event_files(run) == []  # the folder itself is a link: nothing is offered from it
