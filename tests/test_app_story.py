"""Story page in AppTest: before, during and after in the run's numbers, live (with an SGD race) and replayed."""

from __future__ import annotations

import pytest
from support import wait_for

from dashboard.engine_resource import get_engine
from engine.reports.reference_studies import read_references
from engine.task.dataset import EXAMPLE_CLAIMS
from engine.training.presets import preset

PAGE = "dashboard/story.py"
CHAPTERS = [
    "In short",
    "Before: random guesses",
    "During: learning from mistakes",
    "After: which heads became specialists",
]
BEYOND = "Beyond this run: many runs of each recipe"
EXAMPLES = "Some claims, judged by this model"


def chapters_with_the_shipped_studies() -> list[str]:
    shipped = read_references()
    return [*CHAPTERS, *([BEYOND] if shipped.studies or shipped.problems else []), EXAMPLES]


def text(at) -> str:
    return " ".join(m.value for m in at.markdown)


def test_idle_page_says_the_story_begins_with_a_run(open_app, healthy):
    at = open_app(PAGE)
    healthy(at)
    assert "press Train" in at.info[0].value
    assert not at.download_button


def test_saved_run_story_in_its_own_numbers(open_app, saved_run, shipped_study, healthy):
    at = open_app(PAGE)
    at.session_state["replay_run"] = saved_run
    at.run()
    healthy(at)
    assert f"Viewing saved run **{saved_run}** (read-only)" in at.info[0].value
    assert [h.value for h in at.header] == [*CHAPTERS, BEYOND, EXAMPLES]
    snap = get_engine().replay(saved_run)
    story = text(at)
    assert f"It judged **{snap.evals[0].heldout_accuracy:.0%}** of the test claims correctly" in story
    assert "made up by this app" in story and "nats" not in story  # synthetic, said; no jargon units
    assert f"from **{snap.evals[0].heldout_loss:.2f}** to **{snap.evals[-1].heldout_loss:.2f}**" in story
    labels = [h["label"] for h in get_engine().analyze(saved_run)["heads"]["decoder.0.cross"]]
    for index, label in enumerate(labels):
        assert f"**Head {index + 1}: {label}.**" in story
    assert "The story promised four specialists" in story
    assert at.markdown[1].value.startswith("**In this run, ")  # the answer first (after the page's introduction)
    assert "Over 3 training runs of the **quick** recipe, differing only in their random start" in story
    assert "to repeat it: python -m engine study --out studies/quick --seeds 0-2 --preset quick." in story
    assert "Plain SGD" not in story  # a race belongs to the live run only
    examples = at.dataframe[0].value
    assert list(examples["Claim"]) == list(EXAMPLE_CLAIMS)
    rules = dict(zip(examples["Claim"], examples["The rules say"], strict=True))
    assert rules["Gout flare, colchicine 60 mg, $30"] == "INVALID: DOSAGE"
    assert set(examples["The model says"]) <= {
        "VALID",
        *(f"INVALID: {r}" for r in ("MEDICAL", "DOSAGE", "COST", "ADMIN")),
    }
    assert len(at.get("plotly_chart")) == 6  # the heads, Before's, During's two, After's, the studies'
    assert at.download_button(key="story_report").proto.label == "Download this story as an HTML report"


@pytest.mark.slow
def test_live_story_includes_the_sgd_race(open_app, rerun, healthy):
    engine = get_engine()
    engine.start(preset("quick"))
    wait_for(lambda: engine.snapshot().status == "finished")
    engine.start_race()
    wait_for(lambda: engine.race_snapshot().status == "finished")
    at = open_app(PAGE)
    healthy(at)
    assert [h.value for h in at.header] == chapters_with_the_shipped_studies()
    assert "Plain SGD raced alongside on the same claims: At step 60" in text(at)
    shipped = read_references().studies
    assert len(at.get("plotly_chart")) == 6 + bool(shipped)  # the race chart joins the curves
