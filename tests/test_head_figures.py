"""Head-page builders on hand-built measurements: figures, the story's sentences, the HTML report, what-if edits."""

from __future__ import annotations

import html
import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import build_snapshot
from support import labelled_seed

from dashboard import (
    claim_figures,
    head_figures,
    head_overview_figures,
    head_words,
    measurement,
    report,
    story_words,
    what_if,
)
from dashboard.figures import CLASS_COLORS
from data.catalog import load_catalog
from data.rules import CLASSES, REASONS
from data.tokenizer import Tokenizer
from data.vocabulary import CATEGORIES, Token
from engine.interpret.inference import Predictor
from engine.interpret.labels import head_evidence, head_label
from engine.interpret.ownership import GENERALIST, LEANS, LITTLE_EFFECT, NEEDED, SHARES, SPECIALIST
from engine.interpret.pairs import CHECKS
from engine.interpret.prediction import Prediction
from engine.reports.reference_studies import References, ReferenceStudy
from engine.telemetry import EvalPoint, HeadSpecialization, SpecializationPoint

EVEN = {c: 1 / len(CATEGORIES) for c in CATEGORIES}


def head(owns: str | None = None, shares: dict | None = None, **drops: float) -> HeadSpecialization:
    """A generalist, or the specialist of `owns`."""
    kind = SPECIALIST if owns else GENERALIST
    return HeadSpecialization(
        shares=shares or EVEN,
        entropy=2.0,
        confidence=0.2,
        importance=0.01,
        ablation={c: drops.get(c, 0.0) for c in CLASSES},
        owns=owns,
        kind=kind,
        reason=owns,
    )


COST_HEAD = head("COST", {**EVEN, "amount": 0.6}, COST=0.71, ADMIN=0.02)
POINTS = (
    SpecializationPoint(0, {head_figures.CROSS: (head(),) * 4}),
    SpecializationPoint(
        100, {head_figures.CROSS: (head(), COST_HEAD, head(DOSAGE=0.3, ADMIN=0.2), head(MEDICAL=-0.1))}
    ),
)


def spec(fig) -> dict:
    return json.loads(fig.to_json())


def test_shares_figure_animates_every_measured_step_and_starts_where_asked():
    fig = head_figures.shares_figure(POINTS)
    assert [f.name for f in fig.frames] == ["0", "100"]
    assert [s.label for s in fig.layout.sliders[0].steps] == ["0", "100"]
    assert fig.layout.updatemenus[0].buttons[0].label == "▶ Play"
    z = np.asarray(fig.data[0].z)
    assert z.shape == (4, len(CATEGORIES))
    assert z[1, CATEGORIES.index("amount")] == pytest.approx(0.6)  # the newest step is shown first
    assert list(fig.data[0].customdata[1]) == ["COST specialist"] * len(CATEGORIES)
    first = head_figures.shares_figure(POINTS, start=0)
    assert first.layout.sliders[0].active == 0
    np.testing.assert_allclose(np.asarray(first.data[0].z), 1 / len(CATEGORIES))
    spec(fig)


def test_ablation_figure_shows_accuracy_change_on_a_fixed_diverging_scale():
    fig = head_figures.ablation_figure(POINTS[-1:])
    assert "when a head sees what it saw on claims of the same kind" in fig.layout.title.text
    for saved, words in (("zeroed", "head is switched off"), ("mean", "head gives its average output")):
        older = SpecializationPoint(9, {head_figures.CROSS: (replace(COST_HEAD, intervention=saved),) * 4})
        assert words in head_figures.ablation_figure([older]).layout.title.text  # as runs saved by older versions
        assert words in head_figures.answers_figure(older).layout.title.text
    z = np.asarray(fig.data[0].z)
    assert list(fig.data[0].x) == [*REASONS, "VALID"]
    assert z[1, REASONS.index("COST")] == pytest.approx(-0.71)  # a drop shows as a negative change
    clearing = SpecializationPoint(5, {head_figures.CROSS: (head(VALID=0.6), COST_HEAD, head(), head())})
    assert np.asarray(head_figures.ablation_figure([clearing]).data[0].z)[0, -1] == pytest.approx(-0.6)
    tiny = SpecializationPoint(5, {head_figures.CROSS: (head(VALID=0.001, COST=-0.004, DOSAGE=0.0),) * 4})
    cells = np.asarray(head_figures.ablation_figure([tiny]).data[0].z)[0]
    assert all(f"{value:+.2f}" == "+0.00" for value in cells)  # no "-0.00" for a change too small to show
    assert z[3, REASONS.index("MEDICAL")] == pytest.approx(0.1)
    assert (fig.data[0].zmin, fig.data[0].zmid, fig.data[0].zmax) == (-1, 0, 1)
    assert not fig.frames and not fig.layout.sliders  # one measurement: nothing to animate


def test_pairs_table_has_one_row_per_pair_of_heads_with_both_measurements():
    together = {str(j): {c: 0.1 * j for c in CHECKS} for j in (1, 2)}
    lost = {str(j): {r: 0.05 * j for r in REASONS} for j in (1, 2)}
    first = replace(COST_HEAD, pair_necessity=together, pair_ablation=lost)
    second = replace(COST_HEAD, pair_necessity={"2": {"DOSAGE": 0.9}}, pair_ablation={"2": {"DOSAGE": 0.3}})
    rows = head_figures.pairs_rows(SpecializationPoint(5, {head_figures.CROSS: (first, second, head())}))
    assert [r["Heads"] for r in rows] == ["1 + 2", "1 + 3", "2 + 3"]
    assert rows[1]["needed: DOSAGE"] == pytest.approx(0.2) and rows[1]["accuracy lost: COST"] == pytest.approx(0.1)
    assert rows[2]["needed: DOSAGE"] == 0.9 and rows[2]["accuracy lost: DOSAGE"] == 0.3
    assert head_figures.pairs_rows(POINTS[-1]) == []  # runs saved before pairs were measured


def test_necessity_figure_shows_each_check_and_says_when_a_run_predates_it():
    necessity = dict.fromkeys(CHECKS, 0.0) | {"COST": 0.83}
    point = SpecializationPoint(7, {head_figures.CROSS: (replace(COST_HEAD, necessity=necessity),) * 4})
    fig = head_figures.necessity_figure([point])
    assert list(fig.data[0].x) == [
        "MEDICAL",
        "DOSAGE",
        "COST",
        "ADMIN: sex",
        "ADMIN: age",
        "ADMIN: specialty",
        "ADMIN: place",
    ]
    assert np.asarray(fig.data[0].z)[0, 2] == pytest.approx(0.83) and fig.data[0].texttemplate == "%{z:.0%}"
    old = head_figures.necessity_figure(POINTS)  # measured by switching heads off, before patching existed
    assert not old.data and "older versions" in old.layout.annotations[0].text


def test_direct_figure_shows_each_heads_push_on_a_symmetric_scale():
    direct = dict.fromkeys(CHECKS, 0.5) | {"COST": -3.0}
    point = SpecializationPoint(7, {head_figures.CROSS: (replace(COST_HEAD, direct=direct),) * 4})
    fig = head_figures.direct_figure(point)
    assert np.asarray(fig.data[0].z)[0, 2] == -3.0 and (fig.data[0].zmin, fig.data[0].zmax) == (-3.0, 3.0)
    assert not head_figures.direct_figure(POINTS[-1]).data  # an older run: said, not drawn empty


def test_answers_figure_shows_where_each_class_went_per_head():
    answers = {c: dict.fromkeys(CLASSES, 0.0) | {c: 1.0} for c in CLASSES} | {
        "COST": dict.fromkeys(CLASSES, 0.0) | {"MEDICAL": 0.7, "COST": 0.3}
    }
    point = SpecializationPoint(7, {head_figures.CROSS: (replace(COST_HEAD, answers=answers),) * 4})
    fig = head_figures.answers_figure(point)
    assert len(fig.data) == 4 and fig.layout.annotations[0].text == "Head 1: COST specialist"
    z = np.asarray(fig.data[0].z)
    assert z[CLASSES.index("COST"), CLASSES.index("MEDICAL")] == pytest.approx(0.7)  # COST claims fell to MEDICAL
    assert not head_figures.answers_figure(POINTS[-1]).data  # an older run: said, not drawn empty


def test_empty_measurements_say_what_they_wait_for():
    for fig in (head_figures.shares_figure(()), head_figures.ablation_figure(()), head_figures.head_metrics_figure(())):
        assert not fig.data
        assert "Waiting" in fig.layout.annotations[0].text


def test_head_metrics_figure_has_a_line_per_head_in_each_panel():
    fig = head_figures.head_metrics_figure(POINTS)
    assert len(fig.data) == 3 * 4
    assert {t.xaxis for t in fig.data} == {"x", "x2", "x3"}
    assert [a.text.split("<br>")[0] for a in fig.layout.annotations] == [
        t for t, _ in head_figures.HEAD_METRICS.values()
    ]
    assert list(fig.data[0].x) == [0, 100]


def tokens_of(text: str) -> tuple[Token, ...]:
    return Tokenizer.from_catalog(load_catalog()).encode(text).tokens


def prediction(text: str = "Diabetes patient, Metformin 500mg, $150") -> Prediction:
    tokens = tokens_of(text)
    rng = np.random.default_rng(0)
    n = len(tokens)
    return Prediction(
        text=text,
        verdict="VALID",
        reason="NONE",
        confidence=0.9,
        probabilities={c: 0.9 if c == "VALID" else 0.025 for c in CLASSES},
        tokens=tokens,
        attention={
            head_figures.CROSS: rng.dirichlet(np.ones(n), size=(4, 2)),
            head_figures.ENCODER: rng.dirichlet(np.ones(n), size=(4, n)),
        },
        ablation={head_figures.ENCODER: ("VALID",) * 4, head_figures.CROSS: ("VALID", "COST", "VALID", "VALID")},
    )


def test_claim_figures_have_one_heatmap_per_head_with_ablation_in_the_titles():
    p = prediction()
    cross = claim_figures.claim_cross_figure(p, ["generalist", "COST specialist", "generalist", "generalist"])
    assert len(cross.data) == 4 and {t.type for t in cross.data} == {"heatmap"}
    np.testing.assert_allclose(np.asarray(cross.data[1].z), p.attention[head_figures.CROSS][1, :2])  # both answers
    assert list(cross.data[1].y) == ["→ verdict", "→ reason"]
    titles = [a.text for a in cross.layout.annotations]
    assert "COST specialist" in titles[1] and "without it: INVALID: COST" in titles[1]
    assert "same answer" in titles[0]
    long = "shares DOSAGE with heads 1 and 3, ADMIN (sex, age) with head 1, ADMIN (specialty, place) with head 4"
    [shared, *_] = [a.text for a in claim_figures.claim_cross_figure(p, [long] * 4).layout.annotations]
    assert shared.startswith("<b>Head 1</b> · without it: same answer<br>shares DOSAGE") and shared.endswith("…")
    assert len(shared.split("<br>")[1]) == claim_figures.LABEL_CHARS  # what a half-width chart holds
    encoder = claim_figures.claim_encoder_figure(p)
    assert len(encoder.data) == 4
    assert np.asarray(encoder.data[0].z).shape == (len(p.tokens), len(p.tokens))
    spec(cross), spec(encoder)


def test_user_text_is_escaped_in_chips_and_chart_labels():
    p = prediction("<script>alert(1)</script> Diabetes, metformin 500 mg, $40")
    chips = claim_figures.token_chips_html(p.tokens)
    assert "<script>" not in chips and "&lt;" in chips
    assert "&lt;unk&gt;" in chips  # unknown words are marked, visibly
    ticks = claim_figures.claim_cross_figure(p).layout.xaxis4.ticktext
    assert ticks[0].startswith("&lt;") and "⟨unk⟩" in ticks[0]


def test_head_labels_from_a_run_are_escaped_in_every_head_figure():
    label = '<a href="https://evil.example">x</a>'
    hostile = replace(COST_HEAD, kind=label, answers={c: {c: 1.0} for c in CLASSES})  # words of a damaged run
    points = [SpecializationPoint(100, {head_figures.CROSS: (hostile,) * 4})]
    figures = [
        claim_figures.claim_cross_figure(prediction(), [label] * 4),
        head_figures.shares_figure(points),
        head_figures.ablation_figure(points),
        head_figures.answers_figure(points[0]),
    ]
    for fig in figures:
        text = json.dumps(spec(fig))
        assert "<a href" not in text and "&lt;a href" in text


def test_probabilities_figure_puts_the_what_if_beside_the_claim():
    p = prediction()
    q = replace(p, probabilities={c: 0.2 for c in CLASSES})
    fig = claim_figures.probabilities_figure(p, q)
    assert [t.name for t in fig.data] == ["This claim", "What-if"]
    assert list(fig.data[0].y) == ["VALID", *[f"INVALID: {r}" for r in REASONS]]


@pytest.mark.parametrize(
    ("text", "category", "value", "expected"),
    [
        ("Diabetes patient, Metformin 500mg, $150", "dose", 500_000.0, "Diabetes patient, Metformin 500000 mg, $150"),
        ("Diabetes patient, Metformin 500mg, $150", "amount", 150_000.0, "Diabetes patient, Metformin 500mg, $150,000"),
        ("aged 84, woman, amoxicillin 2 g, $1.5k", "age", 30.0, "aged 30, woman, amoxicillin 2 g, $1.5k"),
        ("54 yo F with hypertension, lisinopril 10 mg", "age", 7.0, "7 yo F with hypertension, lisinopril 10 mg"),
        ("54 yo F with hypertension, lisinopril 10 mg", "sex", "M", "54 yo M with hypertension, lisinopril 10 mg"),
        ("aged 84, woman, amoxicillin 2 g, $1.5k", "sex", "M", "aged 84, male, amoxicillin 2 g, $1.5k"),
    ],
)
def test_what_if_rewrites_one_field_and_the_tokenizer_reads_the_new_value(text, category, value, expected):
    tokens = tokens_of(text)
    field = next(f for f in what_if.editable_fields(tokens) if f.category == category)
    changed = what_if.rewrite(text, tokens, {field.index: value})
    assert changed == expected
    reread = next(t for t in tokens_of(changed) if t.category == category)
    assert reread.text.endswith(f":{value}") if category == "sex" else reread.value == pytest.approx(value)
    assert what_if.rewrite(text, tokens, {field.index: field.value}) == text  # unchanged values stay as typed


def story_snapshot(specialization=POINTS, overall: float = 0.9, **per_class_steps: int):
    """Eval points where each class's accuracy reaches 0.9 at the given step (never, if not given), and overall
    accuracy climbs from 0.2 to `overall` by step 100."""
    evals = tuple(
        EvalPoint(
            step=s,
            seconds=s / 10,
            train_loss=2.0 - s / 1000,
            heldout_loss=2.2 - s / 1000,
            train_accuracy=0.2,
            heldout_accuracy=0.2 if s == 0 else overall,
            train_per_class={},
            heldout_per_class={c: 0.9 if s >= per_class_steps.get(c, 10**9) else 0.1 for c in CLASSES},
        )
        for s in range(0, 1001, 100)
    )
    return replace(build_snapshot(steps=1000, status="finished"), evals=evals, specialization=specialization)


def test_story_tells_before_during_after_with_the_run_s_numbers():
    snap = story_snapshot(VALID=100, COST=200, ADMIN=500, DOSAGE=700)
    answer, before, during, after = story_words.tell_story(snap)
    assert (
        answer.title == "In short"
        and "**In this run, 1 of the four heads became a specialist: head 2 for COST.**" in answer.paragraphs[0]
    )
    assert before.numbers["step0_accuracy"] == pytest.approx(0.2)
    assert "no better than picking one of the five answers at random" in before.paragraphs[0]
    assert before.numbers["even_entropy"] >= before.numbers["step0_entropy"] > 0
    assert during.numbers["learned_COST"] == 200 and "MEDICAL" not in during.numbers
    assert "in order: COST (step 200), ADMIN (step 500) and DOSAGE (step 700)" in " ".join(during.paragraphs)
    assert "Not learned yet: MEDICAL." in " ".join(during.paragraphs)
    text = " ".join(after.paragraphs)
    assert after.numbers["specialists"] == 1
    assert f"**Head 2: COST specialist.** {head_evidence(COST_HEAD)}" in text  # the label and what it rests on
    assert "only partly borne out" in text


def test_a_reason_answered_to_everything_is_a_habit_not_learned():
    *_, during, after = story_words.tell_story(story_snapshot(overall=0.3, ADMIN=100))
    assert "learned_ADMIN" not in during.numbers
    assert "Not learned yet: MEDICAL, DOSAGE, COST and ADMIN." in during.paragraphs
    assert "The high score on ADMIN is mostly a habit" in after.paragraphs[0]


def test_story_never_claims_a_specialist_the_numbers_do_not_show():
    generalists = (SpecializationPoint(1000, {head_figures.CROSS: (head(COST=0.1),) * 4}),)
    after = story_words.tell_story(story_snapshot(generalists))[-1]
    text = " ".join(after.paragraphs)
    assert "specialist:" not in text.replace("became a specialist:", "")
    assert "none of the 4 heads became a specialist" in text and "not borne out" in text
    assert after.numbers["specialists"] == 0
    four = tuple(head(r, **{r: 0.8}) for r in REASONS)
    assert "was borne out" in head_words.promise_sentence(four)


def test_story_says_how_heads_were_taken_away_and_names_admins_two_families() -> None:
    patient, provider = replace(head("ADMIN"), reason="sex, age"), replace(head("ADMIN"), reason="specialty, place")
    sentence = head_words.promise_sentence((patient, provider, head(), head()))
    assert "2 of the 4 heads became a specialist (ADMIN (sex, age) and ADMIN (specialty, place))" in sentence
    after = " ".join(story_words.tell_story(story_snapshot())[-1].paragraphs)
    assert "each head in turn sees what it saw on claims of the same kind" in after
    assert "average output" not in after and "switched off" not in after
    assert head_words.selectivity_sentence(replace(COST_HEAD, selectivity=0.62)).startswith("Selectivity +62%")
    assert head_words.selectivity_sentence(COST_HEAD) == ""  # not measured (older runs, encoder heads)


def test_story_says_where_the_heads_started_looking_as_measured() -> None:
    snap = story_snapshot()
    cross = next(n for n in snap.attention_names if n.endswith(".cross"))
    for focused, words in (
        (False, "looked at every word of a claim about equally"),
        (True, "each started out favouring some words over others"),
    ):
        weights = np.full_like(snap.attention[0].weights[cross], 1e-9)
        if focused:
            weights[..., 0] = 1.0  # every head on the first word
        else:
            for claim, probe in enumerate(snap.probe[: weights.shape[0]]):
                weights[claim, ..., : len(probe.tokens)] = 1 / len(probe.tokens)
        first = replace(snap.attention[0], weights={**snap.attention[0].weights, cross: weights})
        before = story_words.tell_story(replace(snap, attention=(first, *snap.attention[1:])))[1]
        assert words in before.paragraphs[1]
        assert (before.numbers["step0_entropy"] < 0.1) == focused


def test_story_of_an_idle_run_is_empty_and_a_running_one_says_so_far():
    assert story_words.tell_story(build_snapshot(steps=10).__class__()) == []
    running = replace(story_snapshot(), status="running")
    assert story_words.tell_story(running)[-1].title.startswith("So far")


def test_html_report_embeds_plotly_once_and_every_figure():
    snap = replace(story_snapshot(), run_id="run <1>")
    page = report.html_report(snap, created="Created today.")
    assert page.count("plotly.js v") == 1  # the library, inline: opens without internet
    assert "<script src=" not in page
    divs = len(re.findall(r'<div id="[^"]+" class="plotly-graph-div"', page))
    assert divs == sum(len(f) for f in report.chapter_figures(snap).values()) == 5  # the heads, then four charts
    assert "run &lt;1&gt;" in page and "run <1>" not in page
    assert "<b>Head 2: COST specialist.</b>" in page
    assert "addFrames" in page and "Plotly.animate" not in page  # the Before heatmap opens at step 0, not played


def test_story_compares_accuracy_with_the_baselines_a_reader_can_check() -> None:
    snap = replace(story_snapshot(overall=0.95), chance=0.504, commonest="VALID")
    levels = (0.33, 0.2, 0.51, 0.95)
    said = {level: story_words.against_baselines(level, snap) for level in levels}
    assert said[0.33] == (
        "more than picking one of the five answers at random (20%), but less than answering VALID "
        "to every claim (50%: that many test claims are VALID)"
    )
    assert said[0.2].startswith("no better than picking one of the five answers at random (20%), but less than")
    assert said[0.51].startswith("no better than answering VALID to every claim")
    assert said[0.95].startswith("more than picking one of the five answers at random (20%) or answering VALID")
    evals = tuple(
        replace(e, heldout_accuracy=a) for e, a in zip(snap.evals, (0.33, 0.51, 0.6, *[0.95] * 8), strict=True)
    )
    during = story_words.tell_story(replace(snap, evals=evals))[2]
    text = " ".join(during.paragraphs)
    assert "did better than answering VALID to every claim" in text and "at step 200" in text  # 0.51 is no better
    assert "passed 50%" not in text and "passed 90% at step 300" in text


def test_the_report_carries_the_storys_judged_claims(trained_run_folder: Path) -> None:
    predictor = Predictor.from_run(trained_run_folder)
    rows = report.judged_examples(predictor)
    page = report.html_report(story_snapshot(), examples=(rows, predictor.step))
    assert report.EXAMPLES_TITLE in page and all(html.escape(str(row["Claim"])) in page for row in rows)
    assert page.count("<tr>") == len(rows) + 1


JARGON = ("necessity", "resampl", "ablat", "logit", "selectiv")


def role(kind: str, reason: str | None = None, **fields) -> HeadSpecialization:
    return replace(head(), kind=kind, reason=reason, owns=reason if kind == SPECIALIST else None, **fields)


NO_SPECIALIST = (
    role(SHARES, "DOSAGE", shared_with={"DOSAGE": (1,)}),
    role(SHARES, "DOSAGE", shared_with={"DOSAGE": (0,)}),
    role(NEEDED, "MEDICAL, DOSAGE, COST, ADMIN"),
    role(LITTLE_EFFECT),
)


def test_the_lead_says_what_a_finished_run_s_heads_became_in_plain_words() -> None:
    lead = head_words.lead_paragraph(NO_SPECIALIST, 1.0)
    assert lead.startswith(
        "**In this run, none of the four heads became a specialist.** The story this app starts "
        "from promised one specialist head for each reason"
    )
    assert (
        "The model judged 100% of the test claims correctly. Instead, heads 1 and 2 share the DOSAGE work, so "
        "either can stand in for the other; head 3 is needed by every kind of faulty claim; head 4 changes "
        "little when taken away."
    ) in lead  # the pair said once, not once per head
    assert not [word for word in JARGON if word in lead.lower()]
    one = head_words.lead_paragraph((COST_HEAD, *NO_SPECIALIST[2:], role(GENERALIST)), 0.9)
    assert one.startswith("**In this run, 1 of the four heads became a specialist: head 1 for COST.**")
    assert "Of the others, head 2 is needed by" in one and "head 4 works for several reasons at once." in one
    backed = (role(LEANS, "COST"), role(SHARES, "DOSAGE", shared_with={"DOSAGE": (0,)}), *NO_SPECIALIST[2:])
    assert (
        "Instead, head 1 works mostly for COST, though not for it alone; head 2 shares the DOSAGE work with head "
        "1, so either can stand in for the other; head 3"
    ) in head_words.lead_paragraph(backed, 1.0)
    four = tuple(role(SPECIALIST, r) for r in REASONS)
    assert head_words.lead_paragraph(four, 1.0).startswith(
        "**In this run, each of the four heads became the specialist of one reason, as the story promised.**"
    )


def test_mid_run_sentences_say_so_far_never_a_verdict() -> None:
    so_far = measurement.Unfinished(177, 3500, stopped=False)
    lead = head_words.lead_paragraph(NO_SPECIALIST, 0.66, so_far)
    assert lead.startswith("**So far, at step 177 of 3,500, none of the four heads has become a specialist.**")
    assert "The model judges 66%" in lead and lead.endswith("Heads can still change before training ends.")
    promise = head_words.promise_sentence(NO_SPECIALIST, so_far)
    assert promise == (
        "The story promises four specialists: medical, dosage, cost and admin. So far, at step 177 of "
        "3,500, none of the 4 heads has become a specialist. Heads can still change before training "
        "ends."
    )
    assert "has become a specialist (COST)" in head_words.promise_sentence((COST_HEAD, *NO_SPECIALIST[1:]), so_far)
    stopped = head_words.promise_sentence(NO_SPECIALIST, measurement.Unfinished(900, 3500, stopped=True))
    assert stopped.endswith(
        "At step 900 of 3,500, where training was stopped, none of the 4 heads had become a specialist."
    )
    assert "not borne out" in head_words.promise_sentence(NO_SPECIALIST)  # the verdict, once training has ended


def test_the_story_of_a_run_still_training_never_says_the_promise_failed() -> None:
    points = (SpecializationPoint(300, {head_figures.CROSS: NO_SPECIALIST}),)
    running = replace(story_snapshot(points), status="running", step=300, total_steps=3500)
    assert measurement.unfinished(running, 300) == measurement.Unfinished(300, 3500, stopped=False)
    chapters = story_words.tell_story(running)
    told = " ".join(p for c in chapters for p in c.paragraphs)
    assert "borne out" not in told and told.count("So far, at step 300 of 3,500") == 2  # In short, and After
    finished = story_words.tell_story(replace(running, status="finished", step=3500))
    assert measurement.unfinished(replace(running, status="finished"), 300) is None
    assert "not borne out" in " ".join(finished[-1].paragraphs)
    assert measurement.unfinished(replace(running, status="stopped"), 300).stopped


def test_heads_figure_shows_each_head_as_a_card_named_and_coloured_by_what_it_became() -> None:
    heads = (COST_HEAD, *NO_SPECIALIST[1:])
    fig = head_overview_figures.heads_figure(heads, "The four heads")
    notes = [a.text.replace("<br>", " ") for a in fig.layout.annotations]
    for index, h in enumerate(heads):
        assert notes[index].startswith(f"<b>Head {index + 1}</b>")
        assert f"<b>{head_label(h)}</b>" in notes[index] and f"It {head_words.role_words(h)}." in notes[index]
    borders = [s for s in fig.layout.shapes if s.fillcolor is None]
    grey = head_overview_figures.NO_REASON_COLOR
    assert [b.line.color for b in borders] == [CLASS_COLORS["COST"], CLASS_COLORS["DOSAGE"], grey, grey]
    assert [b.line.width for b in borders] == [4, 1.5, 1.5, 1.5]  # a thick border: the specialist only
    several = role(SHARES, "DOSAGE", shared_with={"DOSAGE": (1,), "sex, age": (1,)})
    assert head_overview_figures.head_color(several) == grey  # no one reason's colour for two
    hostile = head_overview_figures.heads_figure((replace(COST_HEAD, kind="<img src=x>"),), "t")
    assert "<img" not in json.dumps(spec(hostile)) and "&lt;img src=x&gt;" in json.dumps(spec(hostile))


def reference(name: str, owns_per_seed: list[tuple], config: dict | None = None) -> ReferenceStudy:
    results = tuple(
        labelled_seed(
            s,
            tuple(f"{o} specialist" if o else "generalist" for o in owns),
            owns,
            tuple({} for _ in owns),
            accuracy=0.99,
        )
        for s, owns in enumerate(owns_per_seed)
    )
    return ReferenceStudy(
        name,
        "2026-12-07",
        f"python -m engine study --out studies/{name} --seeds 0-2",
        ("--preset", name),
        config or {},
        results,
    )


def test_the_story_shows_what_many_runs_of_each_recipe_found() -> None:
    snap = story_snapshot((SpecializationPoint(1000, {head_figures.CROSS: NO_SPECIALIST}),))
    default = reference("default", [("DOSAGE", None), (None, None), (None, None)], dict(snap.config))
    sparse = reference("sparse", [("DOSAGE", "COST"), ("COST", None), (None, None)])
    chapters = story_words.tell_story(
        snap, references=References((default, sparse), ("The reference study x is not shown: it is damaged.",))
    )
    answer, beyond = chapters[0], chapters[-1]
    assert answer.paragraphs[0].endswith(
        "Over 3 training runs of this same recipe, differing only in their random "
        "start, 1 ended with at least one specialist head and 2 with none."
    )
    # ^ this run's recipe: the default's study, not the sparse one's
    told = " ".join(beyond.paragraphs)
    assert (
        beyond.key == "reference"
        and (
            "Over 3 training runs of the **default** recipe, differing only in their "
            "random start, 1 ended with at least one specialist head and 2 with none. "
            "A reason got a head of its own in these runs: DOSAGE in 1; MEDICAL, COST "
            "and ADMIN in none."
        )
        in told
    )
    assert "(Trained 2026-12-07; to repeat it: python -m engine study --out studies/default --seeds 0-2.)" in told
    assert "on average, recipe by recipe: default 0.33 and sparse 1.00" in told
    assert "x is not shown: it is damaged." in told
    unlearned = replace(default, results=(replace(default.results[0], learned=False), *default.results[1:]))
    assert (
        "start, of the 2 that learned the job, none ended with a specialist head. (Trained"
        in head_words.study_paragraph(unlearned)
    )
    bars = report.chapter_figures(snap, references=References((default, sparse)))["reference"][0]
    assert [list(t.y) for t in bars.data] == [[0, 1 / 3, 0, 0, 2 / 3], [0, 1 / 3, 2 / 3, 0, 1 / 3]]
    assert [t.name for t in bars.data] == ["default (3 runs)", "sparse (3 runs)"]
    assert story_words.tell_story(snap)[-1].key == "after"  # no study shipped, none told
