"""Inspect page in AppTest: the seed's examples, what-if edits, bad input, the live model and saved runs."""

from __future__ import annotations

import json
import re
import threading
import time

import pytest
from conftest import plotly_array

from dashboard.engine_resource import get_engine
from engine.task.dataset import EXAMPLE_CLAIMS as EXAMPLES
from engine.training.presets import preset

PAGE = "dashboard/inspect_claim.py"


def figures(at, title_start: str) -> list[dict]:
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    return [s for s in specs if s["layout"]["title"]["text"].startswith(title_start)]


def figure(at, title_start: str) -> dict:
    return figures(at, title_start)[0]


def metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def open_saved(open_app, run_id: str):
    at = open_app(PAGE)
    at.session_state["replay_run"] = run_id
    return at.run()


def test_seed_examples_show_verdict_rules_and_four_heads_per_layer(open_app, saved_run, healthy):
    at = open_saved(open_app, saved_run)
    engine = get_engine()
    for example in EXAMPLES[:4]:
        at.selectbox(key="inspect_example").set_value(example).run()
        healthy(at)
        assert at.text_area(key="claim_text").value == example
        expected = engine.predict(example, saved_run)
        assert metric(at, "Verdict") == expected.verdict and metric(at, "Reason") == expected.reason
        assert metric(at, "Rules checker (baseline)") in (
            "VALID",
            *[f"INVALID: {r}" for r in ("MEDICAL", "DOSAGE", "COST", "ADMIN")],
        )
        cross, encoder = figure(at, "Cross-attention"), figure(at, "Encoder self-attention")
        for chart in (cross, encoder):
            assert [t["type"] for t in chart["data"]] == ["heatmap"] * 4
        assert plotly_array(cross["data"][0]["z"]).shape == (2, len(expected.tokens))
        assert plotly_array(encoder["data"][0]["z"]).shape == (len(expected.tokens),) * 2
        chips = at.get("html")[0].proto.body
        assert all(t.surface in chips for t in expected.tokens)
        heads = next(d.value for d in at.dataframe if "Head" in d.value.columns)
        assert heads["Head"].tolist() == ["Head 1", "Head 2", "Head 3", "Head 4"]


def test_what_if_dose_change_moves_the_prediction(open_app, saved_run, healthy):
    at = open_saved(open_app, saved_run)
    assert at.text_area(key="claim_text").value == EXAMPLES[0]  # "Diabetes patient, Metformin 500mg, $150"
    assert "Change a value above" in at.caption[-1].value
    dose = next(n for n in at.number_input if n.label.startswith("Dose"))
    dose.set_value(500_000.0).run()
    healthy(at)
    changed = "Diabetes patient, Metformin 500000 mg, $150"
    assert at.code[0].value == changed
    _, bars = figures(at, "Confidence in each outcome")
    assert [d["name"] for d in bars["data"]] == ["This claim", "What-if"]
    before, after = get_engine().predict(EXAMPLES[0], saved_run), get_engine().predict(changed, saved_run)
    assert before.probabilities != pytest.approx(after.probabilities, abs=1e-3)
    boxes = {"green": " ".join(s.value for s in at.success), "amber": " ".join(w.value for w in at.warning)}
    moved = [colour for colour, said in boxes.items() if "The verdict moved" in said]
    assert moved == ([] if before.outcome == after.outcome else ["green" if after.verdict == "VALID" else "amber"])
    assert any("not plausible" in w.value for w in at.warning)  # 500 g of metformin
    assert len(figures(at, "Cross-attention")) == 2  # the what-if claim has its own heatmaps
    assert any(
        "For the changed claim: the rules checker says INVALID: DOSAGE, because 500000 mg/day of Metformin" in c.value
        for c in at.caption
    )


def reading_rows(at) -> list[dict]:
    table = next(d.value for d in at.dataframe if "Read as" in d.value.columns)
    return table.to_dict("records")


def test_words_not_read_are_named_and_no_verdict_rests_on_them(open_app, saved_run, healthy):
    at = open_saved(open_app, saved_run)
    at.text_area(key="claim_text").set_value("Heart transplant for a common cold, 54 yo F, $5").run()
    healthy(at)
    assert (metric(at, "Verdict"), metric(at, "Reason"), metric(at, "Confidence")) == ("CANNOT JUDGE", "—", "—")
    assert metric(at, "Rules checker (baseline)") == "cannot check"
    warned = " ".join(w.value for w in at.warning)
    p = get_engine().predict("Heart transplant for a common cold, 54 yo F, $5", saved_run)
    assert f"**{p.refusal.sentence()}** The model's own answer, " in warned
    assert "'Heart transplant' is not a diagnosis, drug or procedure Headwatch knows" in warned
    assert "disagree" not in warned  # the model's answer is no verdict to disagree with
    rows = reading_rows(at)
    assert [r["Words"] for r in rows if r["Read as"] == "not read"] == ["Heart transplant", "common cold"]
    assert {"Words": "$5", "Read as": "amount", "Meaning": "$5.00"} in rows
    assert figures(at, "Confidence in each outcome")  # the model's own scores are still shown
    next(n for n in at.number_input if n.label.startswith("Amount")).set_value(500.0).run()
    healthy(at)
    assert "The verdict stayed cannot judge." in [i.value for i in at.info]  # what-if: still nothing to judge on
    at.text_area(key="claim_text").set_value("Metformn 500 mg for diabetes, $10").run()
    healthy(at)
    assert "Read 'Metformn' as metformin." in [i.value for i in at.info]
    assert metric(at, "Verdict") in ("VALID", "INVALID")
    assert {"Words": "Metformn", "Read as": "drug", "Meaning": "Metformin"} in reading_rows(at)


BAD_INPUT = {
    "": "The claim is empty",
    "Diabetes, metformin 500 mg, $40. " * 200: "characters long",
    "blah wibble zorp": "Nothing in this text",
}


def test_bad_input_gets_a_plain_message(open_app, saved_run, healthy):
    at = open_saved(open_app, saved_run)
    for text, message in BAD_INPUT.items():
        at.text_area(key="claim_text").set_value(text).run()
        healthy(at)
        assert message in at.warning[0].value
        assert not at.get("plotly_chart")


def test_tags_render_as_text_and_absurd_numbers_are_flagged(open_app, saved_run, healthy):
    at = open_saved(open_app, saved_run)
    at.text_area(key="claim_text").set_value(
        "<script>alert(1)</script><b>Diabetes</b>, age 900, metformin 500 mg, $-40"
    ).run()
    healthy(at)
    chips = at.get("html")[0].proto.body
    assert "<script>" not in chips and "<b>" not in chips and "&lt;unk&gt;" in chips
    assert any("age 900 is not plausible" in w.value for w in at.warning)
    assert metric(at, "Verdict") in ("VALID", "INVALID")


def test_live_model_without_a_run_asks_for_one_then_answers_with_current_weights(open_app, rerun, healthy):
    at = open_app(PAGE)
    healthy(at)
    assert "No model yet" in at.warning[0].value
    engine = get_engine()
    engine.start(preset("quick"))
    rerun(at, lambda: bool(at.metric))
    healthy(at)
    assert "Answered by the live run at step" in " ".join(c.value for c in at.caption)


def test_a_run_still_preparing_says_so_and_for_how_long(open_app, healthy, monkeypatch):
    from engine.training import trainer

    ready = threading.Event()
    prepare = trainer.prepare_data
    monkeypatch.setattr(trainer, "prepare_data", lambda *args: ready.wait(60) and prepare(*args))
    engine = get_engine()
    engine.start(preset("quick"))
    try:
        time.sleep(1.1)
        at = open_app(PAGE)
        healthy(at)
        said = " ".join(i.value for i in at.info)
        waited = re.search(r"has been preparing its claims and its model for (\d+) s", said)
        assert waited and int(waited[1]) >= 1 and "No model yet" not in said
        assert not at.warning
    finally:
        ready.set()


def test_model_selector_opens_a_saved_run_for_every_page(open_app, saved_run, healthy):
    at = open_app(PAGE)
    at.selectbox(key="inspect_model").set_value(saved_run).run()
    healthy(at)
    assert at.session_state["replay_run"] == saved_run
    assert f"Answered by the saved run {saved_run}" in " ".join(c.value for c in at.caption)
    at.selectbox(key="inspect_model").set_value("live").run()
    assert "replay_run" not in at.session_state


def test_the_rule_that_fired_is_named_and_a_disagreement_is_a_warning(open_app, saved_run, healthy):
    at = open_saved(open_app, saved_run)
    engine = get_engine()
    claims = (*EXAMPLES, "Diabetes, metformin 500mg, $25,000", "Gout flare, colchicine 60 mg, $30")
    disagreements = 0
    for claim in claims:
        at.text_area(key="claim_text").set_value(claim).run()
        healthy(at)
        p = engine.predict(claim, saved_run)
        shown = " ".join(e.value for e in (*at.warning, *at.caption))
        if p.rules == ("INVALID", "COST") and "25,000" in claim:
            assert "above 2.5 x the normal top for a month of Metformin" in shown
        if p.rules == ("VALID", "NONE"):
            assert "finds no rule broken" in shown
        disagree = p.rules is not None and p.outcome != (p.rules[1] if p.rules[0] == "INVALID" else "VALID")
        warned = [w.value for w in at.warning if "disagree" in w.value]
        assert bool(warned) == disagree, claim
        if disagree:
            disagreements += 1
            assert "the rules checker says" in warned[0] or "no rule broken" in warned[0]
    assert disagreements  # the session's 300-step quick model is wrong on some of these


def test_editing_an_example_clears_the_picker_and_what_if_says_one_thing(open_app, saved_run, healthy):
    at = open_saved(open_app, saved_run)
    at.selectbox(key="inspect_example").set_value(EXAMPLES[1]).run()
    at.text_area(key="claim_text").set_value(EXAMPLES[1] + " please review").run()
    healthy(at)
    assert at.selectbox(key="inspect_example").value is None  # no longer that example
    at.text_area(key="claim_text").set_value("Asthma, montelukast").run()  # no dose, amount, age or sex
    healthy(at)
    captions = [c.value for c in at.caption]
    assert any("has no dose, amount, age or sex to change" in c for c in captions)
    assert not any("Change a value above" in c for c in captions)
    many = ", ".join(f"metformin {n} mg, ${n}" for n in range(1, 8))  # 14 values that could change
    at.text_area(key="claim_text").set_value("Diabetes, 54 yo F, " + many).run()
    healthy(at)
    assert len(at.number_input) + len(at.radio) <= 8
    assert any("the first 8 are offered" in c.value for c in at.caption)


def test_a_claim_of_several_items_shows_each_line_and_the_worst_lines_verdict(open_app, saved_run, healthy):
    claim = "Hypertension and diabetes: lisinopril 10 mg and metformin 500 mg, $40"
    at = open_saved(open_app, saved_run)
    at.text_area(key="claim_text").set_value(claim).run()
    healthy(at)
    p = get_engine().predict(claim, saved_run)
    lines = next(d.value for d in at.dataframe if "Service line" in d.value.columns)
    assert lines["Service line"].tolist() == ["lisinopril 10 mg", "metformin 500 mg"]
    assert lines["Verdict"].tolist() == [
        f"{line.verdict}: {line.reason}" if line.verdict == "INVALID" else line.verdict for line in p.lines
    ]
    assert lines["Rules checker"].tolist() == ["VALID", "VALID"]
    shown = " ".join(m.value for m in at.markdown)
    worst = "VALID" if p.verdict == "VALID" else f"INVALID: {p.reason}"
    assert f"The claim's verdict is its worst line's: **{worst}**." in shown
    assert "**The figures below are line 1's** ('lisinopril 10 mg')" in shown
    assert "$40 is the claim's total, not a price of one of its 2 lines" in " ".join(i.value for i in at.info)
    assert (metric(at, "Verdict"), metric(at, "Reason")) == (p.verdict, p.reason)
    cross = figure(at, "Cross-attention")
    assert plotly_array(cross["data"][0]["z"]).shape == (2, len(p.lines[0].tokens))
    next(n for n in at.number_input if n.label.startswith("Dose (was '500 mg')")).set_value(9000.0).run()
    healthy(at)
    assert "lisinopril 10 mg and metformin 9000 mg, $40" in at.code[0].value  # the what-if judges the changed claim
    assert figure(at, "Cross-attention")  # the changed claim's first line
