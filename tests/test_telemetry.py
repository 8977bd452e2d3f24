"""Shared state: bounded histories and snapshots that writers cannot tear."""

import threading

import numpy as np
import pytest

from engine.telemetry import AttentionPoint, Downsampler, EvalPoint, TelemetryHub


def test_downsampler_stays_bounded_and_keeps_the_mean() -> None:
    sampler = Downsampler(capacity=100)
    for step in range(1, 100_001):
        sampler.append(step, 1.0 if step <= 50_000 else 3.0)
    series = sampler.series()
    assert len(series.steps) <= 101
    assert series.steps[-1] == 100_000
    assert list(series.steps) == sorted(series.steps)
    assert np.mean(series.values) == pytest.approx(2.0, abs=0.05)


def test_attention_arrays_in_snapshots_are_read_only() -> None:
    hub = TelemetryHub()
    hub.begin("r", None, {}, 10)
    hub.record_attention(AttentionPoint(0, {"encoder.0.self": np.ones((1, 4, 3, 3))}))
    weights = hub.snapshot().attention[0].weights["encoder.0.self"]
    with pytest.raises(ValueError):
        weights[0, 0, 0, 0] = 5


def test_a_snapshots_settings_are_read_only_for_every_viewer() -> None:
    hub = TelemetryHub()
    settings = {"optimizer": "adam", "model": {"n_heads": 4}}
    hub.begin("r", None, settings, 10)
    settings["model"]["n_heads"] = 8  # the caller's dict changing later changes nothing shown
    config = hub.snapshot().config
    assert config["model"]["n_heads"] == 4
    with pytest.raises(TypeError):
        config["optimizer"] = "sgd"
    with pytest.raises(TypeError):
        config["model"]["n_heads"] = 2


def test_many_readers_never_see_a_torn_state() -> None:
    hub = TelemetryHub()
    hub.begin("r", None, {}, 20_000)
    stop = threading.Event()
    problems: list[str] = []

    def write() -> None:
        for step in range(1, 20_001):
            hub.record_step(step, float(step), step / 100, 100.0, None)
            if step % 50 == 0:
                hub.record_eval(EvalPoint(step, 0, float(step), 0, 0, 0, {}, {}))
        stop.set()

    def read() -> None:
        while not stop.is_set():
            snap = hub.snapshot()
            if snap.loss.steps and snap.loss.steps[-1] != snap.step:
                problems.append(f"loss ends at {snap.loss.steps[-1]} but step is {snap.step}")
            if snap.evals and snap.evals[-1].step > snap.step:
                problems.append("an evaluation from the future")
            if snap.seconds != pytest.approx(snap.step / 100):
                problems.append("seconds and step disagree")

    readers = [threading.Thread(target=read) for _ in range(4)]
    writer = threading.Thread(target=write)
    for thread in [*readers, writer]:
        thread.start()
    for thread in [writer, *readers]:
        thread.join(60)
    assert not problems, problems[:3]
    assert hub.snapshot().step == 20_000
    assert len(hub.snapshot().evals) <= TelemetryHub.HISTORY_CAPACITY


def test_no_better_than_chance_needs_an_ended_run_at_or_below_the_commonest_class() -> None:
    from dataclasses import replace

    from conftest import build_snapshot

    snap = replace(build_snapshot(steps=300, status="finished"), chance=0.5)  # ends at 90% held-out
    assert not snap.no_better_than_chance
    assert replace(snap, chance=0.9).no_better_than_chance  # exactly what answering one class scores
    assert not replace(snap, chance=0.9, status="running").no_better_than_chance  # not ended: it may still learn
    assert not replace(snap, chance=None).no_better_than_chance  # saved before chance was recorded: unknown


def test_first_reaching_is_the_first_evaluation_at_or_above_the_level() -> None:
    from conftest import build_snapshot

    snap = build_snapshot(steps=1000)  # held-out accuracy 0.9 * step / 1000 every 100 steps
    assert snap.first_reaching(0.45).step == 500 and snap.first_reaching(0.9).step == 1000
    assert snap.first_reaching(0.95) is None
