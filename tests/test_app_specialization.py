"""Specialization page in AppTest: what each check needs from each head, head names that match `engine analyze` and
the run's own record, replay and back."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import plotly_array

from dashboard import head_words, measurement
from dashboard.engine_resource import get_engine
from engine.interpret.labels import head_label
from engine.interpret.pairs import CHECKS
from engine.reports.reference_studies import read_references
from engine.training.presets import preset

PAGE = "dashboard/specialization.py"


def chart_titles(at) -> list[str]:
    return [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]


def verdict_matrix(at) -> dict:
    return next(
        json.loads(c.proto.spec)
        for c in at.get("plotly_chart")
        if json.loads(c.proto.spec)["layout"]["title"]["text"].startswith("What each check needs")
    )


def assert_matches_analysis(at, run_id: str) -> None:
    analysis = get_engine().analyze(run_id)
    heads = analysis["heads"]["decoder.0.cross"]
    cards = [m.value for m in at.markdown if m.value.startswith("**Head ")]
    assert [c.split(":", 1)[1].split(".**")[0].strip() for c in cards[:4]] == [h["label"] for h in heads]
    graded = [c.value.split(":")[0] for c in at.caption if c.value.startswith("Selectivity")]
    assert graded == [f"Selectivity {h['selectivity']:+.0%}" for h in heads]  # graded beside each label
    recorded = get_engine().replay(run_id).specialization[-1]  # what the Runs table and the Story read
    assert recorded.step == analysis["step"] and [head_label(h) for h in recorded.heads["decoder.0.cross"]] == [
        h["label"] for h in heads
    ]
    z = plotly_array(verdict_matrix(at)["data"][0]["z"])
    np.testing.assert_allclose(z, [[h["necessity"][c] for c in CHECKS] for h in heads], atol=1e-6)
    assert f"Verdict at step {analysis['step']}" in [s.value for s in at.subheader]


JARGON = ("necessity", "resampl", "ablat", "logit", "selectiv")


def lead(at) -> str:
    """The page's answer: the first paragraph under its title."""
    return at.markdown[0].value


def test_idle_page_explains_and_waits(open_app, healthy):
    at = open_app(PAGE)
    healthy(at)
    assert "press Train" in at.info[0].value
    method = at.expander[0]
    assert method.label == "How the heads are tested"
    assert "Twin claims" in method.markdown[0].value and "specialist" in method.markdown[0].value
    assert not at.get("plotly_chart")


@pytest.mark.slow
def test_live_run_shows_ablation_matrix_and_names_heads_as_analyze_does(open_app, rerun, healthy):
    engine = get_engine()
    engine.start(preset("quick"))
    at = open_app(PAGE)
    # "Verdict" (not "So far"): drawn after the run ended, from `engine analyze` on its saved weights
    rerun(
        at,
        lambda: (
            engine.snapshot().status == "finished" and any(s.value.startswith("Verdict at step") for s in at.subheader)
        ),
    )
    healthy(at)
    assert_matches_analysis(at, engine.snapshot().run_id)
    verdict = [
        "What each check needs from each head",
        "What breaks when a head sees what it saw on claims of the same kind",
        "Where the answers go when one head sees what it saw on claims of the same kind (rows",
        "Each head's direct push towards the right answer, on claims that break each rule (in logits)",
        "Encoder heads",
    ]
    history = ["What each head reads", *verdict[:2], "Each head over training"]  # from the run's own records
    heads = f"The four heads at step {engine.snapshot().step:,}"  # the picture, first
    assert [t.split(":")[0] for t in chart_titles(at)] == [heads, *verdict, *history]
    assert lead(at).startswith("**In this run, ") and "test claims correctly" in lead(at)
    assert not [word for word in JARGON if word in lead(at).lower()]
    assert at.expander[0].label == "How the heads are tested"  # the method, behind the answer


def test_saved_run_is_shown_read_only_with_a_way_back(open_app, saved_run, healthy):
    at = open_app(PAGE)
    at.session_state["replay_run"] = saved_run
    at.run()
    healthy(at)
    assert f"Viewing saved run **{saved_run}** (read-only)" in at.info[0].value
    assert_matches_analysis(at, saved_run)
    snap = get_engine().replay(saved_run)
    shares = next(
        json.loads(c.proto.spec)
        for c in at.get("plotly_chart")
        if json.loads(c.proto.spec)["layout"]["title"]["text"].startswith("What each head reads")
    )
    assert [f["name"] for f in shares["frames"]] == [str(p.step) for p in snap.specialization]
    at.button(key="back_to_live").click().run()
    healthy(at)
    assert "replay_run" not in at.session_state
    assert "press Train" in at.info[0].value


def test_the_answer_leads_over_the_heads_and_the_shipped_study_of_its_recipe(
    open_app, saved_run, shipped_study, healthy
):
    at = open_app(PAGE)
    at.session_state["replay_run"] = saved_run
    at.run()
    healthy(at)
    snap = get_engine().replay(saved_run)
    heads = measurement.measurement_from_report(get_engine().analyze(saved_run)).cross
    studies = read_references(shipped_study).studies
    assert lead(at) == head_words.lead_paragraph(heads, snap.evals[-1].heldout_accuracy, None, studies[0])
    assert lead(at).endswith(
        "Over 3 training runs of this same recipe, differing only in their random start, 1 "
        "ended with at least one specialist head and 2 with none."
    )
    cards = json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]["annotations"]
    for card, head in zip(cards, heads, strict=False):  # the labels the lead's words rest on, each on its card
        assert f"<b>{head_label(head)}</b>" in card["text"].replace("<br>", " ")
    assert head_words.study_paragraph(studies[0]) in [c.value for c in at.caption]
    assert any("Across seeds" in str(e.proto) for e in at.get("page_link"))
