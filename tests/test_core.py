"""The Engine facade: race, predictions mid-training without disturbing the run, saved runs."""

from pathlib import Path

from support import wait_for

from engine.core import Engine
from engine.presets import preset
from engine.runs import list_runs


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


def test_predict_before_any_training_says_what_to_do() -> None:
    assert "press Train" in Engine(save_runs=False).predict("diabetes").error
