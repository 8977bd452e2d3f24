"""Trainer thread: controls from another thread, determinism, divergence, failures, telemetry content."""

import threading
import time
from pathlib import Path

import pytest
import torch
from support import Heard, wait_for

from engine.runs.reading import load_checkpoint
from engine.runs.replay import replay
from engine.telemetry import StepPoint, TelemetryHub
from engine.training.config import ConfigError
from engine.training.presets import preset
from engine.training.schedule import TimeLeft, evaluated, learning_rate
from engine.training.trainer import EngineBusy, Trainer


def quick(**overrides):
    config = preset("quick")
    for name, value in overrides.items():
        setattr(config, name, value)
    return config


def test_quick_run_learns_and_reports_everything(tmp_path: Path) -> None:
    hub = TelemetryHub()
    trainer = Trainer(hub)
    trainer.start(quick(steps=80), folder=tmp_path / "run", run_id="run")
    wait_for(lambda: not trainer.active)
    snap = hub.snapshot()
    assert snap.status == "finished", snap.message
    assert snap.step == 80
    assert snap.loss.values[-1] < snap.loss.values[0]
    assert snap.evals[0].step == 0 and snap.evals[-1].step == 80
    assert set(snap.evals[-1].heldout_per_class) == {"VALID", "MEDICAL", "DOSAGE", "COST", "ADMIN"}
    assert snap.optim and len(snap.optim[-1].heads["decoder.0.cross"]) == 4
    assert snap.optim[-1].heads["decoder.0.cross"][0].mean_sqrt_v > 0
    assert [p.step for p in snap.attention][:3] == [0, 1, 2]
    assert snap.attention[-1].weights["decoder.0.cross"].shape[:2] == (len(snap.probe), 4)
    head = snap.specialization[-1].heads["decoder.0.cross"][0]
    assert sum(head.shares.values()) == pytest.approx(1.0, abs=1e-4)
    assert set(head.ablation) == {"VALID", "MEDICAL", "DOSAGE", "COST", "ADMIN"}
    assert set(head.admin_kinds) == {"sex", "age", "specialty", "place"}
    saved = replay(tmp_path / "run")
    assert saved.specialization[-1].heads["decoder.0.cross"][0].admin_kinds == head.admin_kinds
    assert saved.status == "finished" and saved.step == 80 and saved.read_only
    assert len(saved.attention) == len(snap.attention)
    assert saved.evals[-1].heldout_accuracy == pytest.approx(snap.evals[-1].heldout_accuracy)


def test_same_seed_same_losses() -> None:
    losses = []
    for _ in range(2):
        hub = TelemetryHub()
        trainer = Trainer(hub)
        trainer.start(quick(steps=25, threads=1))  # a measured thread count could switch between the two runs
        wait_for(lambda t=trainer: not t.active)
        losses.append(hub.snapshot().loss.values)
    assert losses[0] == losses[1]


def test_seeds_share_the_claims_and_the_data_seed_changes_them() -> None:
    def run(**overrides) -> tuple[list[float], torch.Tensor]:
        hub = TelemetryHub()
        trainer = Trainer(hub)
        trainer.start(quick(steps=5, threads=1, **overrides))
        wait_for(lambda: not trainer.active)
        assert trainer.data is not None
        return hub.snapshot().loss.values, trainer.data.heldout.tokens

    first_losses, first_claims = run(seed=1)
    other_losses, other_claims = run(seed=2)
    assert torch.equal(first_claims, other_claims)  # same held-out claims, so runs compare fairly
    assert first_losses != other_losses  # but other starting weights and batches
    _, other_data = run(seed=1, data_seed=5)
    assert not torch.equal(first_claims, other_data)


def test_held_out_claims_are_scored_early_then_every_eval_every_steps() -> None:
    assert [s for s in range(1, 301) if evaluated(s, preset("default"))] == [10, 20, 50, 100, 200, 300]
    assert [s for s in range(1, 31) if evaluated(s, preset("quick"))] == [10, 20, 30]  # already every 10


def test_learning_rate_warms_up_falls_to_its_floor_and_stays_there() -> None:
    config = quick(lr=1.0, steps=1000, warmup_steps=100, decay_fraction=0.6)
    assert learning_rate(config, 50) == pytest.approx(0.5)
    assert learning_rate(config, 100) == pytest.approx(1.0)
    assert learning_rate(config, 350) == pytest.approx(0.55)  # half way down the cosine: 0.1 + 0.9 * 0.5
    assert learning_rate(config, 600) == pytest.approx(0.1)
    assert learning_rate(config, 1000) == pytest.approx(0.1)
    assert learning_rate(quick(lr=1.0, steps=1000, warmup_steps=100), 550) == pytest.approx(0.55)


def test_pause_resume_stop_reset_from_another_thread() -> None:
    hub = TelemetryHub()
    trainer = Trainer(hub)
    trainer.start(quick(steps=100_000))
    wait_for(lambda: hub.snapshot().status == "running" and hub.snapshot().step > 3)
    with pytest.raises(EngineBusy):
        trainer.start(quick())
    threading.Thread(target=trainer.pause).start()
    wait_for(lambda: hub.snapshot().status == "paused")
    frozen = hub.snapshot().step
    time.sleep(0.5)
    assert hub.snapshot().step == frozen
    threading.Thread(target=trainer.resume).start()
    wait_for(lambda: hub.snapshot().step > frozen + 2)
    trainer.pause()
    wait_for(lambda: hub.snapshot().status == "paused")
    stopper = threading.Thread(target=trainer.stop)
    stopper.start()
    stopper.join(30)
    assert not trainer.active
    assert hub.snapshot().status == "stopped"
    trainer.reset()
    assert hub.snapshot().status == "idle" and hub.snapshot().step == 0
    trainer.start(quick(steps=5))
    wait_for(lambda: not trainer.active)
    assert hub.snapshot().status == "finished"


def test_huge_learning_rate_diverges_with_a_message(tmp_path: Path) -> None:
    hub = TelemetryHub()
    trainer = Trainer(hub)
    trainer.start(quick(steps=400, lr=3.0, warmup_steps=0, optimizer="sgd"), folder=tmp_path / "r", run_id="r")
    wait_for(lambda: not trainer.active)
    snap = hub.snapshot()
    assert snap.status == "diverged", snap.message
    assert f"Diverged at step {snap.step + 1}" in snap.message
    assert replay(tmp_path / "r").status == "diverged"
    # the message names the weights it kept, and they load and are finite numbers
    kept = load_checkpoint(tmp_path / "r")
    assert f"the weights of step {kept['step']} are kept" in snap.message
    assert all(torch.isfinite(w).all() for w in kept["model"].values() if w.is_floating_point())


def test_a_run_no_better_than_chance_says_so_live_and_saved(tmp_path: Path) -> None:
    hub = TelemetryHub()
    trainer = Trainer(hub)
    trainer.start(quick(lr=10.0), folder=tmp_path / "r", run_id="r")  # Adam at learning rate 10: finite, useless
    wait_for(lambda: not trainer.active)
    snap = hub.snapshot()
    assert snap.status == "finished" and snap.no_better_than_chance
    accuracy = snap.evals[-1].heldout_accuracy
    assert snap.chance == pytest.approx(0.495)  # 99 of the 200 held-out claims are valid
    assert accuracy < snap.chance or accuracy == pytest.approx(snap.chance)  # read in float32: 0.49500000477
    assert snap.message == (
        f"Finished 60 steps in {snap.seconds:.0f} s with {accuracy:.1%} of held-out claims "
        "right: no better than answering VALID to every claim (49.5%). This run learned nothing "
        "useful: train longer, or try another learning rate."
    )
    saved = replay(tmp_path / "r")
    assert saved.no_better_than_chance and saved.message == snap.message


def test_stopping_saves_the_weights_it_stopped_with(tmp_path: Path) -> None:
    hub = TelemetryHub()
    trainer = Trainer(hub)
    trainer.start(quick(steps=100_000), folder=tmp_path / "r", run_id="r")
    wait_for(lambda: hub.snapshot().step >= 3)
    trainer.stop(timeout=30)
    snap = hub.snapshot()
    assert snap.status == "stopped"
    assert load_checkpoint(tmp_path / "r")["step"] == snap.step


def test_an_exception_in_the_thread_is_reported(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import engine.training.loop as loop_module

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(loop_module, "optimizer_stats", broken)
    hub = TelemetryHub()
    trainer = Trainer(hub)
    trainer.start(quick(steps=10))
    wait_for(lambda: not trainer.active)
    assert hub.snapshot().status == "failed"
    assert "unexpected error" in hub.snapshot().message and "disk on fire" not in hub.snapshot().message
    assert "disk on fire" in caplog.text  # the details go to the server's log
    monkeypatch.undo()
    trainer.start(quick(steps=3))
    wait_for(lambda: not trainer.active)
    assert hub.snapshot().status == "finished"


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("lr", 0.0, "lr must be in (0, 10]"),
        ("lr", -1.0, "lr must be in (0, 10]"),
        ("batch_size", 0, "batch size must be in [1, 1024]"),
        ("steps", 10**9, "steps must be in [1, 1e+06]"),
        ("optimizer", "rmsprop", "optimizer must be one of"),
    ],
)
def test_bad_settings_are_refused_with_the_range(field: str, value: object, words: str) -> None:
    trainer = Trainer(TelemetryHub())
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace("[", r"\[").replace("+", r"\+")):
        trainer.start(quick(**{field: value}))
    assert not trainer.active


def test_unknown_cross_attention_keys_are_refused() -> None:
    config = quick()
    config.model.cross_keys = "tea leaves"
    trainer = Trainer(TelemetryHub())
    with pytest.raises(ConfigError, match="cross keys must be one of embeddings, encoder"):
        trainer.start(config)
    assert not trainer.active


@pytest.mark.slow
def test_reset_while_preparing_returns_at_once_and_the_old_thread_writes_nothing() -> None:
    hub = TelemetryHub()
    trainer = Trainer(hub)
    trainer.start(preset("default"))  # 40k claims take seconds to prepare
    started = time.monotonic()
    trainer.reset()
    assert time.monotonic() - started < 7
    assert hub.snapshot().status == "idle" and trainer.config is None
    time.sleep(0.5)
    if trainer.active:
        trainer._thread.join(60)
    assert hub.snapshot().status == "idle" and hub.snapshot().step == 0


@pytest.mark.parametrize(
    ("step_ms", "expected", "least_share"),
    [
        ({1: [38.0], 2: [28.0]}, 2, 0.9),  # an idle 2-core machine: two threads pay
        ({1: [43.0], 2: [200.0]}, 1, 0.98),  # another process wants a core: two threads stall
        ({1: [43.0], 2: [30.0] * 7 + [400.0]}, 1, 0.9),  # a viewer's redraws now and then: rare stalls cost the most
    ],
)
def test_thread_tuner_settles_on_the_faster_count(
    monkeypatch: pytest.MonkeyPatch, step_ms, expected, least_share
) -> None:
    import engine.training.threads as threads_module

    monkeypatch.setattr(threads_module.os, "cpu_count", lambda: 2)
    tuner = threads_module.ThreadTuner(0)
    used = []
    for step in range(2000):
        used.append(tuner.current)
        pattern = step_ms[tuner.current]
        tuner.record(pattern[step % len(pattern)] / 1000)
    assert tuner.current == expected
    assert used.count(expected) / len(used) >= least_share


def test_a_fixed_thread_count_is_kept_and_another_cannot_train_beside_it() -> None:
    from engine.training.threads import ThreadPolicy

    policy = ThreadPolicy()
    with policy.lease(1) as lease:
        assert torch.get_num_threads() == 1
        for _ in range(500):
            lease.record(0.5)
            assert torch.get_num_threads() == 1
        with pytest.raises(ConfigError, match="another run in this process is training with 1 threads"):
            policy.lease(2)
        with policy.lease(1), policy.lease(0) as measuring:  # the same count, or measuring: they share it
            for _ in range(500):
                measuring.record(0.5)
                assert torch.get_num_threads() == 1


@pytest.mark.slow
def test_two_trainers_never_change_each_others_thread_count(monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.training.threads as threads_module

    monkeypatch.setattr(threads_module.ThreadTuner, "PERIOD", 3)  # the measuring run tries the other count often
    monkeypatch.setattr(threads_module.ThreadTuner, "TRIAL", 2)
    fixed_counts: list[int] = []
    measuring_counts: list[int] = []  # while the fixed run trains

    class Counts:
        def __init__(self, counts: list[int], only_beside_fixed: bool = False) -> None:
            self.counts, self.only_beside_fixed = counts, only_beside_fixed

        def hear(self, event: object) -> None:
            beside = 1 <= len(fixed_counts) < 150  # between the fixed run's first step and its last
            if isinstance(event, StepPoint) and (beside or not self.only_beside_fixed):
                self.counts.append(torch.get_num_threads())

    measuring = Trainer(TelemetryHub(), observers=[Counts(measuring_counts, only_beside_fixed=True)])
    fixed = Trainer(TelemetryHub(), observers=[Counts(fixed_counts)])
    measuring.start(quick(steps=5000, threads=0))  # tries 1 and 2 threads as it goes
    wait_for(lambda: measuring.hub.snapshot().step >= 30)
    fixed.start(quick(steps=150, threads=1))
    wait_for(lambda: not fixed.active)
    measuring.stop(timeout=30)
    assert fixed.hub.snapshot().status == "finished" and len(fixed_counts) == 150
    assert set(fixed_counts) == {1}
    assert len(measuring_counts) > 10 and set(measuring_counts) == {1}  # it stopped trying 2 while sharing


def test_thread_tuner_reacts_when_steps_slow_down(monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.training.threads as threads_module

    monkeypatch.setattr(threads_module.os, "cpu_count", lambda: 2)
    tuner = threads_module.ThreadTuner(0)
    step_ms = {1: 40.0, 2: 28.0}
    for _ in range(100):  # idle: settles on two threads
        tuner.record(step_ms[tuner.current] / 1000)
    assert tuner.current == 2
    step_ms[2] = 150.0  # viewers arrive: two threads now stall
    used = []
    for _ in range(60):  # far sooner than the 200-step period
        used.append(tuner.current)
        tuner.record(step_ms[tuner.current] / 1000)
    assert tuner.current == 1 and used[-20:] == [1] * 20


def test_unsaved_runs_build_their_pool_once_and_read_it_back(isolated_pool_cache: Path) -> None:
    from engine.task.dataset import unsaved_pool_cache

    assert unsaved_pool_cache() == isolated_pool_cache / "headwatch" / "pools"
    config = preset("quick")
    config.data_seed, config.steps = 9_001, 5  # settings no other test uses: this test builds the pool

    def pools() -> set[tuple[str, int]]:
        return {(p.name, p.stat().st_mtime_ns) for p in unsaved_pool_cache().glob("pool-*.pt")}

    seen = [pools()]
    for _ in range(2):
        trainer = Trainer(TelemetryHub())
        trainer.start(config)
        wait_for(lambda trainer=trainer: not trainer.active)
        assert trainer.hub.snapshot().status == "finished"
        seen.append(pools())
    assert len(seen[1] - seen[0]) == 1  # the first run wrote its pool
    assert seen[2] == seen[1]  # the second read it back, rewriting nothing


def test_without_a_home_folder_unsaved_runs_just_build_their_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.task.dataset import unsaved_pool_cache

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setattr(Path, "home", no_home)
    assert unsaved_pool_cache() is None
    trainer = Trainer(TelemetryHub())
    trainer.start(preset("quick"))
    wait_for(lambda: not trainer.active)
    assert trainer.hub.snapshot().status == "finished"


def test_time_left_is_the_steps_own_rate_plus_the_measurements_still_planned() -> None:
    # 1,000 steps of 10 ms; attention is captured at every one of the first 30 steps (0.5 s each) and at step 1,000;
    # held-out claims are scored every 100 steps (1 s each)
    left = TimeLeft(1000, {"attention": {*range(1, 31), 1000}, "held-out": set(range(100, 1001, 100))})
    for _ in range(30):
        left.add_step(0.01)
        left.add("attention", 0.5)
    assert left.seconds(30) == pytest.approx(970 * 0.01 + 0.5)  # the scoring's cost is not known yet
    average_rate_said = 970 * (30 * 0.51) / 30  # the time so far over the steps so far: about 50 times too long
    assert left.seconds(30) < average_rate_said / 40
    for _ in range(31, 101):
        left.add_step(0.01)
    left.add("held-out", 1.0)
    assert left.seconds(100) == pytest.approx(900 * 0.01 + 0.5 + 9 * 1.0)


def test_every_step_says_the_time_left() -> None:
    seen = Heard(StepPoint)
    trainer = Trainer(TelemetryHub(), [seen])
    config = preset("quick")
    config.steps = 60
    trainer.start(config)
    wait_for(lambda: not trainer.active)
    steps = seen.events
    assert len(steps) == 60 and all(s.seconds_left is not None and s.seconds_left >= 0 for s in steps)
    assert steps[-1].seconds_left < steps[0].seconds_left
    assert trainer.hub.snapshot().eta_seconds == steps[-1].seconds_left


def test_an_even_reason_balance_draws_valid_claims_and_each_reason_equally_often() -> None:
    from engine.training.loop import even_class_weights

    classes = torch.tensor([0] * 16 + [1] * 4 + [2] * 4 + [3] * 4 + [4] * 4)  # the generator's own cycle
    drawn = torch.multinomial(
        even_class_weights(classes), 50_000, replacement=True, generator=torch.Generator().manual_seed(0)
    )
    shares = torch.bincount(classes[drawn], minlength=5).double() / 50_000
    assert torch.allclose(shares, torch.full((5,), 0.2, dtype=torch.float64), atol=0.01)


def test_the_reason_balance_is_a_train_option_and_a_wrong_one_is_refused_in_words(tmp_path: Path) -> None:
    from engine.__main__ import parser
    from engine.training.train_options import train_config

    args = parser().parse_args(["train", "--out", str(tmp_path / "run"), "--reason-balance", "even"])
    assert train_config(args).reason_balance == "even"
    assert train_config(parser().parse_args(["train", "--out", str(tmp_path)])).reason_balance == "generated"
    config = preset("quick")
    config.reason_balance = "lopsided"
    with pytest.raises(ConfigError, match="reason balance must be one of generated, even"):
        config.validate()
