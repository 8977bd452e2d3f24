"""Where the verdict forms, in AppTest: a saved run's recorded tables with a step slider, a run that recorded none,
a damaged file, a run still training ("so far"), and the figure built from a hand-made table."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from conftest import plotly_array
from support import probe_table_with

from dashboard.engine_resource import get_engine
from dashboard.verdict_figures import verdict_figure
from data.rules import REASONS
from engine.interpret.probes import FIELDS, hub_line, read_probes, where_it_forms
from engine.runs.layout import PROBES
from engine.training.presets import preset

PAGE = "dashboard/verdict.py"


def chart(at) -> dict:
    return json.loads(at.get("plotly_chart")[0].proto.spec)


def test_idle_page_explains_in_plain_words_and_says_what_to_do(open_app, healthy):
    at = open_app(PAGE)
    healthy(at)
    assert at.title[0].value == "Where the verdict forms"
    assert "the model has already made up its mind" in at.markdown[0].value
    assert "press Train" in at.info[0].value and not at.get("plotly_chart")
    assert at.expander[0].label == "How this is measured"


def test_a_saved_run_shows_its_tables_step_by_step_in_its_own_numbers(open_app, saved_run, engine_env, healthy):
    at = open_app()
    at.session_state["replay_run"] = saved_run
    at.switch_page(PAGE).run()
    healthy(at)
    tables = read_probes(engine_env / saved_run)
    last = tables[-1]
    lead = next(m.value for m in at.markdown if m.value.startswith("**At step"))
    assert lead.startswith(f"**At step {last.step:,}:** {hub_line(last)}")
    assert all(where_it_forms(last, reason) in lead for reason in REASONS)
    spec = chart(at)
    assert spec["layout"]["title"]["text"].endswith(f"at step {last.step:,}")
    encoder = plotly_array(spec["data"][0]["z"])
    assert encoder.shape == (len(REASONS), len(FIELDS))
    dosage_item = last.cell("encoder", "DOSAGE", "item")
    assert encoder[REASONS.index("DOSAGE"), list(FIELDS).index("item")] == dosage_item
    assert at.select_slider(key="verdict_step").options == [*(f"step {t.step:,}" for t in tables), "latest"]
    at.select_slider(key="verdict_step").set_value(0).run()
    healthy(at)
    assert chart(at)["layout"]["title"]["text"].endswith("at step 0")
    assert any(m.value.startswith("**At step 0:**") for m in at.markdown)


def test_a_run_without_tables_says_so_and_how_to_get_them_and_a_damaged_file_is_named(
    open_app, saved_run, engine_env, healthy
):
    (engine_env / saved_run / PROBES).unlink()
    at = open_app()
    at.session_state["replay_run"] = saved_run
    at.switch_page(PAGE).run()
    healthy(at)
    assert any("no record of where its verdicts form" in i.value for i in at.info)
    assert at.code[0].value == f"python -m engine analyze --run {engine_env / saved_run} --probes"
    assert not at.get("plotly_chart")
    (engine_env / saved_run / PROBES).write_text('{"format": "headwatch-probes", "version": 1, "tables": [7]}')
    at.run()
    healthy(at)
    assert "probes.json is damaged" in at.error[0].value and not at.get("plotly_chart")


def test_a_run_still_training_is_shown_so_far(open_app, rerun, healthy):
    engine = get_engine()
    engine.start(replace(preset("quick"), steps=5000))
    try:
        at = open_app(PAGE)
        rerun(at, lambda: bool(at.get("plotly_chart")))
        healthy(at)
        assert engine.snapshot().active
        assert "so far, at step" in chart(at)["layout"]["title"]["text"]
        assert any(m.value.startswith("**So far, at step") for m in at.markdown)
    finally:
        engine.stop()


def test_the_figure_marks_where_a_verdict_formed_and_leaves_unmeasured_cells_blank() -> None:
    hand_made = probe_table_with({"DOSAGE": {"dose": 0.95}})
    hand_made.accuracy["encoder"]["ADMIN"]["place"] = float("nan")
    figure = verdict_figure(hand_made)
    encoder, embeddings = figure.data
    row, column = REASONS.index("DOSAGE"), list(FIELDS).index("dose")
    assert encoder.text[row][column] == "0.95 ✓" and embeddings.text[row][column] == "0.60"
    assert encoder.text[REASONS.index("COST")][column] == "0.60"  # measured, formed nowhere
    assert encoder.z[REASONS.index("ADMIN")][list(FIELDS).index("place")] is None
    assert encoder.text[REASONS.index("ADMIN")][list(FIELDS).index("place")] == "–"
    assert (encoder.zmin, encoder.zmax) == (0.5, 1.0) == (embeddings.zmin, embeddings.zmax)
    assert figure.layout.title.text == "Where each reason's verdict forms, at step 100"
    assert verdict_figure(hand_made, so_far=True).layout.title.text.endswith("so far, at step 100")


def test_saved_run_folder_is_left_as_it_was(saved_run, engine_env, open_app):
    before = {p.name: p.stat().st_mtime_ns for p in Path(engine_env / saved_run).iterdir()}
    at = open_app()
    at.session_state["replay_run"] = saved_run
    at.switch_page(PAGE).run()
    assert {p.name: p.stat().st_mtime_ns for p in Path(engine_env / saved_run).iterdir()} == before
