"""Attention page in AppTest: four heatmaps per layer type, a claim picker and a step scrubber."""

from __future__ import annotations

import json

import pytest
from conftest import plotly_array

from dashboard.engine_resource import get_engine
from engine.training.presets import preset

PAGE = "dashboard/attention.py"


def heatmap_charts(at) -> list[dict]:
    specs = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    return [s for s in specs if any(t["type"] == "heatmap" for t in s["data"])]


def test_idle_page_says_what_to_do(open_app, healthy):
    at = open_app(PAGE)
    healthy(at)
    assert "press Train" in at.info[0].value
    assert not at.get("plotly_chart")


@pytest.mark.slow
def test_four_heatmaps_per_layer_type_live_and_scrubbed(open_app, rerun, healthy):
    engine = get_engine()
    engine.start(preset("quick"))
    at = open_app(PAGE)
    rerun(at, lambda: engine.snapshot().status == "finished" and len(heatmap_charts(at)) == 2)
    at.run()  # the last rerun may have drawn the step before the end
    healthy(at)
    cross, encoder = heatmap_charts(at)
    assert cross["layout"]["title"]["text"].startswith("Decoder cross-attention")
    assert encoder["layout"]["title"]["text"].startswith("Encoder self-attention")
    for chart in (cross, encoder):
        assert sum(t["type"] == "heatmap" for t in chart["data"]) == 4
    snap = engine.snapshot()
    tokens = list(snap.probe[0].tokens)
    assert cross["layout"]["xaxis"]["ticktext"] == tokens
    assert plotly_array(cross["data"][0]["z"]).shape == (2, len(tokens))
    assert plotly_array(encoder["data"][0]["z"]).shape == (len(tokens), len(tokens))
    assert f"step {snap.attention[-1].step:,}" in cross["layout"]["title"]["text"]  # as the slider writes it
    stored = [p.step for p in snap.attention]
    notches = next(c.value for c in at.caption if "stored steps, one per notch" in c.value)
    assert notches.startswith(f"{len(stored)} stored steps") and f"… {stored[-1]:,}." in notches

    at.selectbox(key="attention_claim").set_value(2).run()
    at.select_slider(key="attention_step").set_value(0).run()
    cross, _ = heatmap_charts(at)
    assert cross["layout"]["title"]["text"].endswith("step 0")
    assert cross["layout"]["xaxis"]["ticktext"] == list(snap.probe[2].tokens)
    healthy(at)
