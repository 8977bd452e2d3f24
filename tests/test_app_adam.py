"""Adam's memories page in AppTest: per-head series appear while a run trains, and the SGD race runs."""

from __future__ import annotations

import json

import pytest
from conftest import plotly_array

from dashboard import figures
from dashboard.engine_resource import get_engine
from engine.training.presets import preset

PAGE = "dashboard/adam.py"


def charts(at) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def test_idle_page_explains_and_waits(open_app, healthy):
    at = open_app(PAGE)
    healthy(at)
    assert "bias correction" in at.markdown[0].value
    assert f"(1 − {preset('default').beta2:g}ᵗ)" in at.markdown[0].value  # the recipe a Train press would use
    assert "press Train" in at.info[0].value
    assert at.button(key="race").disabled


def test_per_head_series_appear_after_a_few_steps(open_app, rerun, healthy):
    engine = get_engine()
    config = preset("quick")
    config.beta2 = 0.95
    engine.start(config)
    at = open_app(PAGE)
    # the page draws the snapshot of its last run, so wait for the engine first, then draw once more
    # the charts are rebuilt at most every 2 s: wait until the drawn ones hold three points
    rerun(
        at,
        lambda: (
            len(at.get("plotly_chart")) >= 4
            and all(len(plotly_array(line["y"])) >= 3 for chart in charts(at)[:4] for line in chart["data"])
        ),
    )
    healthy(at)
    assert "`v = 0.95·v + 0.05·gradient²`, a memory of about 20 steps" in at.markdown[0].value  # this run's Adam
    memory = charts(at)[:4]
    assert [c["layout"]["title"]["text"] for c in memory] == [t for t, _ in figures.MEMORY_METRICS.values()]
    for chart in memory:
        lines = chart["data"]
        assert len(lines) == 3 * 4  # three attention layers, four heads each
        assert {line["name"] for line in lines} == {"Head 1", "Head 2", "Head 3", "Head 4"}
        for line in lines:
            values = plotly_array(line["y"])
            assert len(values) >= 3 and (values > 0).all()


@pytest.mark.slow
def test_race_button_runs_sgd_and_reports_the_measured_difference(open_app, rerun, healthy):
    engine = get_engine()
    engine.start(preset("quick"))
    at = open_app(PAGE)
    rerun(at, lambda: not at.button(key="race").disabled)
    at.button(key="race").click().run()
    assert engine.race_snapshot().config["optimizer"] == "sgd"
    rerun(
        at,
        lambda: (
            not engine.snapshot().active
            and engine.race_snapshot().status == "finished"
            and any("race" in c["layout"]["title"]["text"].lower() for c in charts(at))
        ),
    )
    at.run()  # the last rerun may have drawn the step before the end
    healthy(at)
    race = next(c for c in charts(at) if "Race" in c["layout"]["title"]["text"])
    assert {t["name"].split(" (")[0] for t in race["data"]} == {"Adam", "SGD"}
    summary = next(m.value for m in at.markdown if "What the measured curves show" in m.value)
    assert "At step 60" in summary and "training loss" in summary and "swung back and forth" in summary


def test_a_second_race_is_refused_plainly(open_app, rerun, healthy):
    engine = get_engine()
    engine.start(preset("quick"))
    at = open_app(PAGE)
    rerun(at, lambda: not at.button(key="race").disabled)
    engine.start_race()  # another viewer starts the race while this page still offers it
    at.button(key="race").click().run()
    healthy(at)
    assert "already running" in at.error[0].value
