"""Train page in AppTest: renders, starts the one shared run, shows it to every session, reports errors plainly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dashboard.engine_resource import get_engine
from engine.runs.layout import TENSORBOARD
from engine.training.presets import PRESETS, preset


def choose_quick(at) -> None:
    at.selectbox(key="preset").set_value("quick").run()


def test_idle_page_is_prefilled_from_the_default_preset(open_app, healthy):
    at = open_app()
    healthy(at)
    default = PRESETS["default"]
    assert at.number_input(key="cfg_lr").value == default.lr
    assert at.number_input(key="cfg_steps").value == default.steps
    assert at.radio(key="cfg_optimizer").value == default.optimizer
    assert "No training yet" in at.info[0].value
    assert not at.button(key="train").disabled
    assert all(at.button(key=k).disabled for k in ("pause", "stop", "reset"))


def test_recipe_fills_the_form(open_app):
    at = open_app()
    choose_quick(at)
    assert at.number_input(key="cfg_steps").value == PRESETS["quick"].steps
    assert at.number_input(key="cfg_batch_size").value == PRESETS["quick"].batch_size


@pytest.mark.slow
def test_train_starts_the_shared_run_and_every_session_sees_it(open_app, rerun, healthy):
    at = open_app()
    choose_quick(at)
    at.number_input(key="cfg_seed").set_value(7)
    at.checkbox(key="tensorboard").check()
    at.button(key="train").click().run()
    engine = get_engine()
    assert engine.snapshot().status in ("preparing", "running", "paused", "finished")
    assert engine.snapshot().config["seed"] == 7 and engine.snapshot().config["tensorboard"] is True
    assert at.button(key="train").disabled
    assert not at.button(key="stop").disabled

    other = open_app()  # a second browser
    rerun(other, lambda: engine.snapshot().status == "finished" and bool(other.get("plotly_chart")))
    rerun(at, lambda: bool(at.warning))
    healthy(at)
    healthy(other)
    finished = at.warning[0].value  # 60 quick steps learn nothing: said in a warning, never a green success
    assert finished.startswith("Finished 60 steps") and "no better than answering VALID to every claim" in finished
    assert "Step 60 of 60" in at.get("progress")[0].proto.text
    assert any("TensorBoard files in its folder's tensorboard/" in c.value for c in at.caption)
    assert any((Path(engine.snapshot().run_dir) / TENSORBOARD).glob("events.out.tfevents.*"))
    loss = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert [t["name"] for t in loss["data"]] == ["Training batches", "Held-out claims (never trained on)"]
    assert not at.button(key="train").disabled
    assert not at.button(key="reset").disabled

    at.button(key="reset").click().run()
    assert engine.snapshot().status == "idle"
    assert "No training yet" in at.info[0].value


def can_pause(at) -> bool:
    return can_press(at, "pause")


def can_press(at, key: str) -> bool:
    return any(button.key == key and not button.disabled for button in at.button)


def test_pause_resume_stop(open_app, rerun, healthy):
    config = preset("quick")
    config.steps = 100_000
    engine = get_engine()
    engine.start(config)
    at = open_app()
    # the training thread acts at its next step: wait for the page to say so, as a viewer would
    rerun(at, lambda: can_pause(at))
    at.button(key="pause").click().run()
    # the buttons are drawn before the live view reads the status: a redraw can say Paused above a Pause button
    rerun(at, lambda: engine.snapshot().status == "paused" and "Paused" in at.info[0].value and can_press(at, "resume"))
    at.button(key="resume").click().run()
    rerun(at, lambda: engine.snapshot().status == "running" and can_pause(at))
    at.button(key="stop").click().run()
    assert engine.snapshot().status == "stopped"
    healthy(at)


def test_a_busy_engine_is_a_plain_message_not_a_traceback(open_app, healthy):
    at = open_app()  # drawn while idle: Train is enabled
    config = preset("quick")
    config.steps = 100_000
    get_engine().start(config)  # ... when someone else starts a run
    at.button(key="train").click().run()
    healthy(at)
    assert "already training" in at.error[0].value


def test_settings_survive_a_visit_to_another_page(open_app, healthy):
    at = open_app()
    choose_quick(at)
    at.switch_page("dashboard/attention.py").run()
    at.switch_page("dashboard/train.py").run()
    healthy(at)
    assert at.selectbox(key="preset").value == "quick"
    assert at.number_input(key="cfg_steps").value == PRESETS["quick"].steps
