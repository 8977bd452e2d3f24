"""One writer per folder, and a study's workers end with it: nothing lost, nothing written outside the runs folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support import wait_for

from engine.core import Engine
from engine.reports.study import STUDY_LOCK, _log_tail, run_study
from engine.reports.study_results import STUDY
from engine.runs.layout import CONFIG, METRICS, STATUS, WRITER_LOCK
from engine.runs.listing import list_runs
from engine.runs.reading import RunError, read_status
from engine.runs.writer import WriterLock, create_new_file
from engine.training.presets import preset

ROOT = Path(__file__).resolve().parents[1]


def engine_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "engine", *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout
    )


@pytest.mark.slow
def test_a_second_writer_is_refused_in_words_in_this_process_or_another(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    held = WriterLock(folder)
    with pytest.raises(RunError, match=rf"another process \(process {os.getpid()}\) is writing the run in run"):
        WriterLock(folder)
    assert WriterLock.holder(folder) == f"process {os.getpid()}"
    (folder / CONFIG).write_text("{}")
    refused = engine_cli("train", "--out", str(folder), "--replace", "--preset", "quick", "--steps", "5")
    assert refused.returncode == 2 and "is writing the run" in refused.stderr and "Traceback" not in refused.stderr
    assert (folder / CONFIG).read_text() == "{}"  # --replace left the folder being written alone
    held.release()
    assert WriterLock.holder(folder) is None
    WriterLock(folder).release()


def test_a_lock_file_planted_as_a_link_is_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / WRITER_LOCK).symlink_to(outside)
    with pytest.raises(RunError, match="not a plain file"):
        WriterLock(folder)
    assert outside.read_text() == "keep me"


def test_new_files_replace_links_and_hard_links_instead_of_writing_through_them(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    for plant in (os.symlink, os.link):
        log = tmp_path / f"seed-{plant.__name__}.log"
        plant(outside, log)
        with create_new_file(log) as file:
            file.write(b"training output")
        assert outside.read_text() == "keep me" and log.read_bytes() == b"training output"


def test_a_seed_log_leading_elsewhere_is_not_read_and_a_long_one_is_read_only_at_its_end(tmp_path: Path) -> None:
    (tmp_path / "seed-0.log").symlink_to("/dev/zero")
    assert _log_tail(tmp_path / "seed-0.log") == ""  # returns at once: never read until memory runs out
    (tmp_path / "seed-1.log").write_text("x" * 10_000_000 + "\nstep 7/9  loss 1.0\n")
    assert _log_tail(tmp_path / "seed-1.log").endswith("step 7/9  loss 1.0\n")
    assert len(_log_tail(tmp_path / "seed-1.log")) < 100_000


def test_one_process_at_a_time_runs_a_study_and_errors_name_no_server_path(tmp_path: Path) -> None:
    out = tmp_path / "study"
    held = WriterLock(out, STUDY_LOCK, what="study")
    with pytest.raises(RunError, match="is writing the study in study"):
        run_study(out, [0], ["--preset", "quick"])
    held.release()
    (out / STUDY).mkdir()  # a study.json that is a folder
    stopped = threading.Event()
    stopped.set()
    with pytest.raises(RunError) as raised:
        run_study(out, [0], ["--preset", "quick"], stop=stopped)
    assert str(tmp_path) not in str(raised.value) and "could not be written" in str(raised.value)


@pytest.mark.slow
def test_study_parallel_is_at_most_the_cores_there_are(tmp_path: Path) -> None:
    cores = len(os.sched_getaffinity(0))
    refused = engine_cli("study", "--out", str(tmp_path / "s"), "--parallel", str(cores + 1))
    assert refused.returncode == 2 and f"at most the {cores} cores" in refused.stderr
    huge = engine_cli("study", "--out", str(tmp_path / "s"), "--seeds", "0-99999999999999999999")
    assert huge.returncode == 2 and "a seed is at most" in huge.stderr and "Traceback" not in huge.stderr
    assert not (tmp_path / "s").exists()


def test_two_servers_pressing_train_in_the_same_second_both_train(tmp_path: Path) -> None:
    engines = [Engine(runs_dir=tmp_path), Engine(runs_dir=tmp_path)]
    config = preset("quick")
    config.steps = 20
    ready = threading.Barrier(2)
    errors: list[Exception] = []

    def press(engine: Engine) -> None:
        ready.wait()
        try:
            engine.start(config)
        except Exception as error:  # any refusal fails the test below, with its message
            errors.append(error)

    pressers = [threading.Thread(target=press, args=(engine,)) for engine in engines]
    for presser in pressers:
        presser.start()
    for presser in pressers:
        presser.join()
    wait_for(lambda: not any(engine.main.active for engine in engines))
    assert errors == []
    snaps = [engine.snapshot() for engine in engines]
    assert [s.status for s in snaps] == ["finished", "finished"] and snaps[0].run_id != snaps[1].run_id
    assert all(not engine.main.unsaved for engine in engines)
    assert sorted(r.run_id for r in list_runs(tmp_path)) == sorted(s.run_id for s in snaps)


def _alive(process: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{process}/status").read_text()
    except OSError:
        return False


def _worker_ids(out: Path) -> list[int]:
    return [int(WriterLock.holder(out / f"seed-{s}").split()[1]) for s in (0, 1)]


@pytest.mark.slow
def test_killing_a_study_ends_its_workers_and_a_resume_loses_nothing(tmp_path: Path) -> None:
    out = tmp_path / "study"
    command = [
        sys.executable,
        "-m",
        "engine",
        "study",
        "--out",
        str(out),
        "--preset",
        "quick",
        "--seeds",
        "0-1",
        "--steps",
        "100000",
        "--",
        "--max-seconds",
        "3",
    ]
    runner = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(
        lambda: (
            all(WriterLock.holder(out / f"seed-{s}") for s in (0, 1))
            and all((out / f"seed-{s}" / METRICS).exists() for s in (0, 1))
        ),
        timeout=120,
    )
    workers = _worker_ids(out)
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    wait_for(lambda: not any(WriterLock.holder(out / f"seed-{s}") for s in (0, 1)), timeout=30)
    wait_for(lambda: not any(_alive(worker) for worker in workers), timeout=30)
    assert all(read_status(out / f"seed-{s}")["status"] == "stopped" for s in (0, 1))  # each said how it ended
    resumed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    record = json.loads((out / STUDY).read_text())
    assert [r["seed"] for r in record["results"]] == [0, 1] and record["failures"] == {}
    for seed in (0, 1):
        assert json.loads((out / f"seed-{seed}" / STATUS).read_text())["status"] == "finished"
        assert json.loads((out / f"seed-{seed}" / CONFIG).read_text())["seed"] == seed
    started = time.monotonic()
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert again.stdout.startswith("2 of 2 seeds already measured") and time.monotonic() - started < 60
