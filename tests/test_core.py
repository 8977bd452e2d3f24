"""The Engine facade: race, predictions mid-training without disturbing the run, saved runs."""

import threading
import time
from pathlib import Path

import pytest
from support import wait_for

from engine.core import TRAINING_NOW, Engine, EngineBusy, RunsFolderError
from engine.runs.listing import list_runs
from engine.training.presets import preset


@pytest.mark.slow
def test_race_trains_sgd_on_the_same_data_and_seed(tmp_path: Path) -> None:
    engine = Engine(runs_dir=tmp_path)
    config = preset("quick")
    config.steps = 40
    engine.start(config)
    engine.start_race()
    wait_for(lambda: not engine.main.active and not engine.race.active)
    main, race = engine.snapshot(), engine.race_snapshot()
    assert main.config["optimizer"] == "adam" and race.config["optimizer"] == "sgd"
    assert race.config["seed"] == main.config["seed"] and race.step == main.step == 40
    assert race.optim[-1].heads["decoder.0.cross"][0].mean_abs_m is None
    assert {s.optimizer for s in list_runs(tmp_path)} == {"adam", "sgd"}


@pytest.mark.slow
def test_predicting_mid_training_does_not_disturb_the_run(tmp_path: Path) -> None:
    engine = Engine(runs_dir=tmp_path, save_runs=False)
    config = preset("quick")
    config.steps = 120
    engine.start(config)
    wait_for(lambda: engine.snapshot().step > 20)
    predictions = [engine.predict("Diabetes patient, Metformin 500mg, $150") for _ in range(20)]
    wait_for(lambda: not engine.main.active)
    assert all(p.verdict in ("VALID", "INVALID") for p in predictions)
    assert set(predictions[0].attention) == {"encoder.0.self", "decoder.0.self", "decoder.0.cross"}
    assert predictions[0].attention["decoder.0.cross"].shape[0] == 4
    undisturbed = Engine(save_runs=False)
    undisturbed.start(config)
    wait_for(lambda: not undisturbed.main.active)
    assert engine.snapshot().loss.values == undisturbed.snapshot().loss.values


def test_a_predictor_never_pairs_one_runs_weights_with_anothers_settings(tmp_path: Path) -> None:
    engine = Engine(runs_dir=tmp_path, save_runs=False)
    small, wide = preset("quick"), preset("quick")
    small.steps, wide.steps, wide.model.d_model = 10, 10, 48
    engine.start(small)
    wait_for(lambda: not engine.main.active)
    answers, problems, done = [], [], threading.Event()

    def keep_asking() -> None:  # a viewer's Inspect page, while someone else presses Train
        while not done.is_set():
            try:
                predictor = engine.predictor()
                answers.append(None if predictor is None else predictor.model.config.d_model)
            except Exception as error:  # any error is the failure this test looks for
                problems.append(error)
            time.sleep(0.002)  # as often as pages ask, not so often that training waits for the interpreter

    asker = threading.Thread(target=keep_asking)
    asker.start()
    engine.start(wide)
    wait_for(lambda: not engine.main.active)
    done.set()
    asker.join()
    assert not problems
    assert set(answers) <= {32, None, 48} and answers[-1] == 48
    assert engine.predictor().predict("Diabetes patient, Metformin 500mg, $150").verdict in ("VALID", "INVALID")


def test_predict_before_any_training_says_what_to_do() -> None:
    assert "press Train" in Engine(save_runs=False).predict("diabetes").error


def test_the_run_training_now_is_listed_as_such_not_as_interrupted(tmp_path: Path) -> None:
    engine = Engine(runs_dir=tmp_path)
    config = preset("quick")
    config.steps = 100_000
    engine.start(config)
    wait_for(lambda: engine.snapshot().step > 2)
    run_id = engine.snapshot().run_id
    assert [r.status for r in engine.list_runs()] == [TRAINING_NOW]
    assert list_runs(tmp_path)[0].status == "interrupted"  # what the files alone say, as after a crash
    assert engine.replay(run_id).status == "running"
    engine.stop()
    wait_for(lambda: not engine.main.active)
    assert [r.status for r in engine.list_runs()] == ["stopped"]


def test_reset_if_idle_refuses_while_a_run_trains_and_keeps_it(tmp_path: Path) -> None:
    engine = Engine(runs_dir=tmp_path, save_runs=False)
    config = preset("quick")
    config.steps = 100_000
    engine.start(config)
    wait_for(lambda: engine.snapshot().step > 2)
    with pytest.raises(EngineBusy, match="stop it first"):
        engine.reset(only_if_idle=True)
    assert engine.main.active and engine.snapshot().step > 2
    engine.stop()
    wait_for(lambda: not engine.main.active)
    engine.reset(only_if_idle=True)
    assert engine.snapshot().status == "idle"


def test_the_race_can_run_unsaved_when_its_folder_cannot_be_written(tmp_path: Path) -> None:
    engine = Engine(runs_dir=tmp_path / "runs")
    config = preset("quick")
    config.steps = 40
    engine.start(config)
    wait_for(lambda: not engine.main.active)
    (tmp_path / "runs").rename(tmp_path / "gone")
    (tmp_path / "runs").write_text("a file where the folder was")
    with pytest.raises(RunsFolderError):
        engine.start_race()
    engine.start_race(save=False)
    wait_for(lambda: not engine.race.active)
    assert engine.race_snapshot().status == "finished" and engine.race_snapshot().run_dir is None
