"""Faults: a killed process, an unwritable or full disk, hostile run ids; the data survives, the message is plain."""

import errno
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import wait_for

from engine.core import Engine, RunsFolderError
from engine.runs.listing import RunError, list_runs
from engine.runs.replay import replay
from engine.training.presets import preset

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_kill_9_mid_run_keeps_everything_up_to_the_last_flush(tmp_path: Path) -> None:
    out = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "engine", "train", "--out", str(out), "--preset", "quick", "--steps", "1000000"],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    progress = []
    while len(progress) < 3:
        line = process.stderr.readline()
        assert line, "trainer exited early"
        if line.startswith("step "):
            progress.append((time.monotonic(), int(re.match(r"step (\d+)", line).group(1))))
    time.sleep(1.5)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(10)
    saved = replay(out)
    assert saved.status == "stopped" and "stopped while this run was training" in saved.message
    assert saved.step >= progress[-1][1]  # the last printed progress was at least 1.5 s before the kill
    assert saved.evals and saved.attention and saved.specialization
    with open(out / "metrics.jsonl", "a") as file:
        file.write('{"type": "step", "step": 99999')  # a torn last line, as a kill mid-write leaves
    assert replay(out).step == saved.step
    summary = list_runs(tmp_path)[0]
    assert summary.run_id == "killed" and summary.status == "interrupted" and summary.problem is None


def test_unwritable_runs_folder_is_reported_and_training_can_go_on_unsaved(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    engine = Engine(runs_dir=blocker / "runs")
    config = preset("quick")
    with pytest.raises(RunsFolderError, match=r"Runs cannot be saved in .*You can train without saving"):
        engine.start(config)
    assert engine.snapshot().status == "idle"
    engine.start(config, save=False)
    wait_for(lambda: not engine.main.active)
    assert engine.snapshot().status == "finished" and engine.snapshot().run_dir is None


def test_disk_full_mid_run_stops_saving_not_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.runs.writer as runs

    real = runs.atomic_write_bytes

    def full_disk(path: Path, data: bytes) -> None:
        if "attention" in str(path) and "step_000000012" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    monkeypatch.setattr(runs, "atomic_write_bytes", full_disk)
    engine = Engine(runs_dir=tmp_path)
    engine.start(preset("quick"))
    wait_for(lambda: not engine.main.active)
    snap = engine.snapshot()
    assert snap.status == "finished"
    assert "no longer saved: No space left on device" in snap.warning


@pytest.mark.parametrize("run_id", ["../../etc", "..", "/etc/passwd", "a/b", "", "runs/../x"])
def test_run_ids_cannot_escape_the_runs_folder(tmp_path: Path, run_id: str) -> None:
    engine = Engine(runs_dir=tmp_path)
    with pytest.raises(RunError, match=r"not a valid run id|outside"):
        engine.replay(run_id)
    assert engine.predict("diabetes, metformin 500 mg", run_id=run_id).error


def test_checkpoint_from_another_model_size_names_what_differs(tmp_path: Path) -> None:
    engine = Engine(runs_dir=tmp_path)
    engine.start(preset("quick"))
    wait_for(lambda: not engine.main.active)
    folder = Path(engine.snapshot().run_dir)
    config = (folder / "config.json").read_text().replace('"d_model": 32', '"d_model": 64')
    (folder / "config.json").write_text(config)
    prediction = engine.predict("diabetes, metformin 500 mg, $20", run_id=folder.name)
    assert "does not match this run's model configuration: d_model is 32 in the checkpoint but 64" in prediction.error


def test_a_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    import pickle

    class Exploit:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    engine = Engine(runs_dir=tmp_path)
    engine.start(preset("quick"))
    wait_for(lambda: not engine.main.active)
    folder = Path(engine.snapshot().run_dir)
    with open(folder / "checkpoints" / "latest.pt", "wb") as file:
        pickle.dump({"model": Exploit()}, file)
    prediction = engine.predict("diabetes, metformin 500 mg, $20", run_id=folder.name)
    assert "holds more than model weights, so it is not loaded" in prediction.error
    assert not (tmp_path / "pwned").exists()


def test_status_json_keeps_the_step_a_stopped_run_ended_at(tmp_path: Path) -> None:
    import json
    from dataclasses import replace

    engine = Engine(runs_dir=tmp_path)
    engine.start(replace(preset("quick"), steps=100_000))
    wait_for(lambda: engine.snapshot().step >= 20)
    engine.stop()
    wait_for(lambda: not engine.main.active)
    status = json.loads((Path(engine.snapshot().run_dir) / "status.json").read_text())
    assert status["status"] == "stopped" and status["step"] == engine.snapshot().step >= 20
    assert list_runs(tmp_path)[0].step >= 20


def test_pressing_train_and_stop_over_and_over_leaves_one_folder(tmp_path: Path) -> None:
    from dataclasses import replace

    engine = Engine(runs_dir=tmp_path)
    config = replace(preset("quick"), steps=100_000, eval_every=10_000)
    for _ in range(4):
        engine.start(config)
        wait_for(lambda: engine.snapshot().step >= 1)
        engine.stop()
        wait_for(lambda: not engine.main.active)
    assert len(list_runs(tmp_path)) == 1  # stopped before any measurement: nothing to study, so not kept
    engine.start(replace(config, eval_every=5))
    wait_for(lambda: engine.snapshot().step >= 12)
    engine.stop()
    wait_for(lambda: not engine.main.active)
    engine.start(config)
    engine.stop()
    wait_for(lambda: not engine.main.active)
    assert len(list_runs(tmp_path)) == 2  # a run that measured something is kept
