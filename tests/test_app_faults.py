"""Faults as a viewer meets them on the Train page (AppTest): divergence, a crash in the training thread, impatient or
stale clicks, an unwritable or full disk, settings out of range. Every one is a plain sentence, never a traceback,
there is never a second training thread, and the app stays usable."""

from __future__ import annotations

import errno
import json
import threading
from pathlib import Path

import pytest

from dashboard.engine_resource import get_engine
from engine.training.config import LIMITS, MAX_STEPS
from engine.training.presets import PRESETS, preset

PAGE = "dashboard/train.py"


def trainer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "headwatch-trainer" and t.is_alive()]


def choose_quick(at, steps: int | None = None) -> None:
    at.selectbox(key="preset").set_value("quick").run()
    if steps is not None:
        at.number_input(key="cfg_steps").set_value(steps).run()


def errors(at) -> str:
    return " | ".join(e.value for e in at.error)


def saved_status(runs: Path) -> list[str]:
    """The status of every run folder on disk, so a test can tell that no run was lost or doubled."""
    return [
        json.loads((folder / "status.json").read_text())["status"]
        for folder in sorted(runs.iterdir())
        if (folder / "status.json").exists()
    ]


def can_pause(at) -> bool:
    return any(button.key == "pause" and not button.disabled for button in at.button)


def test_divergence_is_said_in_plain_words(open_app, rerun, healthy):
    at = open_app()
    choose_quick(at, steps=300)
    at.radio(key="cfg_optimizer").set_value("sgd")
    at.number_input(key="cfg_lr").set_value(10.0)
    at.button(key="train").click().run()
    rerun(at, lambda: get_engine().snapshot().status == "diverged" and "Diverged" in errors(at))
    healthy(at)
    assert "Diverged at step" in errors(at) and "(loss is" in errors(at)
    assert "Try a smaller learning rate" in errors(at)
    assert not at.button(key="train").disabled  # nothing trains: the user can try again at once


def test_a_crash_in_the_training_thread_shows_failed_and_a_new_run_starts(open_app, rerun, healthy, monkeypatch):
    import engine.training.loop

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("optimizer statistics exploded")

    real = engine.training.loop.optimizer_stats
    monkeypatch.setattr(engine.training.loop, "optimizer_stats", broken)
    at = open_app()
    choose_quick(at)
    at.button(key="train").click().run()
    engine_ = get_engine()
    # the form is drawn before the live view: a run that fails in between shows up in the form on the next rerun,
    # which the live view asks for as soon as it sees the change (AppTest does not run it by itself)
    rerun(at, lambda: engine_.snapshot().status == "failed" and bool(at.error) and not at.button(key="train").disabled)
    healthy(at)
    assert "Training failed because of an unexpected error" in errors(at)
    assert "RuntimeError" not in errors(at) and "exploded" not in errors(at)  # no exception text in the page
    assert not trainer_threads()

    monkeypatch.setattr(engine.training.loop, "optimizer_stats", real)
    at.button(key="train").click().run()
    rerun(at, lambda: engine_.snapshot().status == "finished" and bool(at.warning))
    healthy(at)
    assert "Finished 60 steps" in at.warning[0].value  # 60 quick steps learn nothing, and the page says so


def test_pressing_train_twice_starts_one_run(open_app, engine_env, rerun, healthy):
    at = open_app()
    choose_quick(at, steps=300)
    at.button(key="train").click().run()
    engine_ = get_engine()
    first = engine_.snapshot().run_id
    assert first and engine_.snapshot().active
    # A double click: the second press comes from the button as the browser still shows it, enabled. Streamlit
    # drops a press on a button it last drew disabled; one that gets in first meets EngineBusy (a plain message,
    # see test_app_train). Either way there is no second run.
    train = at.button(key="train")
    train.proto.disabled = False
    train.click().run()
    healthy(at)
    assert errors(at) in ("", "A run is already training: stop or reset it first.")
    assert engine_.snapshot().run_id == first
    assert trainer_threads() == [engine_.main._thread]
    rerun(at, lambda: engine_.snapshot().status == "finished" and bool(at.success or at.warning))
    assert saved_status(engine_env) == ["finished"]


def test_reset_on_a_stale_page_does_not_throw_a_running_run_away(open_app, engine_env, rerun, healthy):
    engine_ = get_engine()
    at = open_app()
    choose_quick(at)
    at.button(key="train").click().run()
    rerun(at, lambda: engine_.snapshot().status == "finished" and not at.button(key="reset").disabled)
    # ... and before this page redraws, someone in another browser starts a long run
    config = preset("quick")
    config.steps = 100_000
    engine_.start(config)
    at.button(key="reset").click().run()
    healthy(at)
    assert "stop it first" in errors(at)
    assert engine_.snapshot().active and len(trainer_threads()) == 1
    at.button(key="stop").click().run()
    assert not engine_.snapshot().active
    assert saved_status(engine_env) == ["finished", "stopped"]


def test_stop_while_paused_stops_at_once(open_app, engine_env, rerun, healthy):
    engine_ = get_engine()
    config = preset("quick")
    config.steps = 100_000
    engine_.start(config)
    at = open_app()
    rerun(at, lambda: can_pause(at))
    at.button(key="pause").click().run()
    rerun(at, lambda: engine_.snapshot().status == "paused" and "Paused" in at.info[0].value)
    at.button(key="stop").click().run()  # stop() waits for the thread, up to 2 s
    assert engine_.snapshot().status == "stopped" and not trainer_threads()
    healthy(at)
    assert "Stopped by the user at step" in at.warning[0].value
    assert saved_status(engine_env) == ["stopped"]
    at.button(key="reset").click().run()  # and the page is usable again
    assert engine_.snapshot().status == "idle" and not at.button(key="train").disabled


def test_changing_page_while_training_keeps_the_one_run(open_app, engine_env, rerun, healthy):
    engine_ = get_engine()
    at = open_app()
    choose_quick(at, steps=300)
    at.button(key="train").click().run()
    run_id = engine_.snapshot().run_id
    for page in ("dashboard/adam.py", "dashboard/attention.py", PAGE):
        at.switch_page(page).run()
        healthy(at)
        assert len(trainer_threads()) <= 1 and engine_.snapshot().run_id == run_id
    assert at.button(key="train").disabled or engine_.snapshot().status == "finished"
    rerun(at, lambda: engine_.snapshot().status == "finished" and ended(at))
    healthy(at)
    assert engine_.snapshot().run_id == run_id and saved_status(engine_env) == ["finished"]


def test_an_unwritable_runs_folder_offers_training_without_saving(open_app, tmp_path, monkeypatch, rerun, healthy):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # a folder below a regular file cannot be made, even by root
    monkeypatch.setenv("HEADWATCH_RUNS_DIR", str(blocker / "runs"))
    get_engine.clear()
    at = open_app()
    choose_quick(at)
    at.button(key="train").click().run()
    healthy(at)
    assert "Runs cannot be saved in" in errors(at) and "You can train without saving" in errors(at)
    engine_ = get_engine()
    assert engine_.snapshot().status == "idle"

    at.run()  # the offer outlives a rerun: a live page reruns every few seconds
    at.button(key="train_unsaved").click().run()
    rerun(at, lambda: engine_.snapshot().status == "finished" and ended(at))
    healthy(at)
    assert engine_.snapshot().run_dir is None
    assert not [b for b in at.button if b.key == "train_unsaved"]  # gone once a run has started


def ended(at) -> bool:
    """The run's end is on the page: a success, or a warning when it learned nothing (60 quick steps do not)."""
    return bool(at.success or at.warning)


def warnings(at) -> str:
    return " ".join(w.value for w in at.warning)


def train_quick_until_warned(open_app, rerun, healthy):
    """Press Train on the quick recipe and wait for the run to finish with a warning about saving on the page."""
    at = open_app()
    choose_quick(at)
    at.button(key="train").click().run()
    engine_ = get_engine()
    rerun(at, lambda: engine_.snapshot().status == "finished" and any("saved" in w.value for w in at.warning))
    healthy(at)
    return at, engine_


def test_a_full_disk_mid_run_is_a_warning_and_training_goes_on(open_app, rerun, healthy, monkeypatch):
    import engine.runs.writer

    real = engine.runs.writer.atomic_write_bytes

    def full_disk(path: Path, data: bytes) -> None:
        if path.name == "step_000000012.pt":
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    monkeypatch.setattr(engine.runs.writer, "atomic_write_bytes", full_disk)
    at, _ = train_quick_until_warned(open_app, rerun, healthy)
    assert "Training goes on, but this run is no longer saved: No space left on device" in warnings(at)


def test_an_already_full_disk_offers_training_without_saving(open_app, engine_env, monkeypatch, rerun, healthy):
    import engine.core

    def no_space(descriptor: int) -> None:  # what fsync reports when the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(engine.core.os, "fsync", no_space)
    at = open_app()
    choose_quick(at)
    at.button(key="train").click().run()
    healthy(at)
    assert "No space left on device" in errors(at) and "You can train without saving" in errors(at)
    monkeypatch.undo()
    at.button(key="train_unsaved").click().run()
    rerun(at, lambda: get_engine().snapshot().status == "finished" and ended(at))
    assert not list(engine_env.glob("2*"))  # no empty, damaged run left behind


def test_a_run_folder_that_cannot_be_written_trains_unsaved_and_leaves_nothing(
    open_app, engine_env, monkeypatch, rerun, healthy
):
    import engine.runs.writer

    def no_space(path: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(engine.runs.writer, "atomic_write_bytes", no_space)  # the disk filled after the check
    at, engine_ = train_quick_until_warned(open_app, rerun, healthy)
    assert "This run is not being saved" in warnings(at) and "No space left" in warnings(at)
    assert engine_.snapshot().run_dir is None and not [p for p in engine_env.iterdir() if p.name[0] != "."]


@pytest.mark.parametrize(
    ("key", "value"), [("cfg_lr", 0.0), ("cfg_lr", -0.1), ("cfg_batch_size", 0), ("cfg_steps", MAX_STEPS + 1)]
)
def test_settings_out_of_range_never_reach_the_engine(open_app, healthy, key, value):
    at = open_app()
    choose_quick(at)
    at.number_input(key=key).set_value(value).run()  # what a tampered client could send: the browser refuses it
    healthy(at)
    kept = at.number_input(key=key).value
    assert kept != value
    at.button(key="train").click().run()
    healthy(at)
    config = get_engine().snapshot().config
    assert config[key.removeprefix("cfg_")] == kept
    get_engine().stop()


def test_the_form_names_every_allowed_range(open_app):
    at = open_app()
    helps = {key: at.number_input(key=key).help for key in ("cfg_lr", "cfg_batch_size", "cfg_steps", "cfg_seed")}
    assert "Allowed: 0.00001 to 10." in helps["cfg_lr"]
    assert f"Allowed: 1 to {LIMITS['batch_size'][1]:,}." in helps["cfg_batch_size"]
    assert f"Allowed: 1 to {MAX_STEPS:,}." in helps["cfg_steps"]
    assert "Allowed: 0 to 2,147,483,647." in helps["cfg_seed"]


def test_a_config_error_from_the_engine_is_a_plain_message(open_app, healthy, monkeypatch):
    # the form cannot send a bad value, but a recipe carries settings the form does not show
    monkeypatch.setattr(PRESETS["quick"], "warmup_steps", -1)
    at = open_app()
    choose_quick(at)
    at.button(key="train").click().run()
    healthy(at)
    assert "warmup steps must be in [0, 1e+06] (got -1)" in errors(at)
    assert get_engine().snapshot().status == "idle" and not trainer_threads()


@pytest.mark.slow
def test_a_race_that_cannot_be_saved_is_said_plainly_and_can_run_unsaved(open_app, engine_env, rerun, healthy):
    engine_ = get_engine()
    engine_.start(preset("quick"))
    at = open_app("dashboard/adam.py")
    rerun(at, lambda: not engine_.snapshot().active and not at.button(key="race").disabled)
    engine_env.rename(engine_env.with_name("moved"))
    engine_env.write_text("now a file")  # the saved run's folder is gone and a new one cannot be made
    at.button(key="race").click().run()
    healthy(at)
    assert "The race cannot be saved. Runs cannot be saved in" in errors(at)
    assert engine_.race_snapshot().status == "idle"
    at.run()  # the offer to race without saving outlives a rerun
    at.button(key="race_unsaved").click().run()
    rerun(at, lambda: engine_.race_snapshot().status == "finished")
    healthy(at)
    assert engine_.race_snapshot().run_dir is None
    assert not [b for b in at.button if b.key == "race_unsaved"]
