"""Across seeds page in AppTest: a real study of the quick recipe trained from the page, saved studies, damage."""

from __future__ import annotations

import json

import pytest

from dashboard.engine_resource import get_engine
from engine.reports.analyze import analyze_run
from engine.reports.study_results import STUDY

NOT_LEARNED = "not named: this run did not learn to audit claims"

PAGE = "dashboard/seeds.py"


def test_idle_page_explains_and_offers_a_study(open_app, healthy):
    at = open_app(PAGE)
    healthy(at)
    assert "One run is an anecdote" in at.markdown[0].value
    assert at.button(key="start_study").proto.label == "Train 5 seeds"
    assert "No study of 5 seeds of this recipe yet" in at.info[0].value
    assert "3,500 steps" in " ".join(c.value for c in at.caption)
    assert "'sparse' is the default with sparse attention" in at.selectbox(key="study_preset").help


@pytest.mark.slow
def test_a_study_trains_from_the_page_and_counts_each_reason(open_app, rerun, healthy):
    at = open_app(PAGE)
    at.selectbox(key="study_preset").set_value("quick")
    at.number_input(key="study_seeds").set_value(2)
    at.run()
    at.button(key="start_study").click().run()
    healthy(at)
    engine = get_engine()
    assert engine.study is not None and engine.study.out == engine.study_folder("quick", 2)
    rerun(at, lambda: not engine.study.active and len(at.dataframe) >= 1, timeout=240)
    at.run()  # drawn after the study's thread ended (the run above may have drawn it in its last moment)
    healthy(at)
    table = at.dataframe[0].value
    assert list(table["Seed"]) == [0, 1]
    saved = {r["seed"]: r for r in json.loads((engine.study_folder("quick", 2) / STUDY).read_text())["results"]}
    for seed, heads in zip(table["Seed"], table["Heads"], strict=True):
        analysis = analyze_run(engine.study_folder("quick", 2) / f"seed-{seed}")
        named = "; ".join(h["label"] for h in analysis["heads"]["decoder.0.cross"])
        assert heads == (named if saved[seed]["learned"] else NOT_LEARNED)  # the quick recipe learns little
    learned = sum(r["learned"] for r in saved.values())
    sentence = next(i.value for i in at.info if "runs" in i.value)
    assert (
        ("over 2 seeds" in sentence or "in every one of the 2 runs" in sentence)
        if learned == 2
        else ("did not learn to audit claims" in sentence or "None of the 2 runs learned" in sentence)
    )
    assert [m.label for m in at.metric] == (
        [f"{r}: its own head" for r in ("MEDICAL", "DOSAGE", "COST", "ADMIN")] if learned else []
    )
    assert at.button(key="start_study").proto.label == "Train 2 seeds"  # done: it can be trained again (resumes)


def test_a_saved_study_says_where_heads_only_leaned(open_app, healthy, engine_env):
    folder = get_engine().study_folder("default", 5)
    folder.mkdir(parents=True)
    necessity = [dict.fromkeys(("MEDICAL", "DOSAGE", "COST", "sex", "age", "specialty", "place"), 0.0)] * 2
    heads = (
        (["leans MEDICAL", "COST specialist"], [None, "COST"], ["MEDICAL", None]),
        (["leans MEDICAL", "leans COST"], [None, None], ["MEDICAL", "COST"]),
    )  # labels, owns, leans per seed
    seeds = [
        {
            "seed": s,
            "steps": 3500,
            "accuracy": 0.99,
            "labels": labels,
            "owns": owns,
            "necessity": necessity,
            "leans": leans,
        }
        for s, (labels, owns, leans) in enumerate(heads)
    ]
    (folder / STUDY).write_text(json.dumps({"recipe": {}, "results": seeds}))
    at = open_app(PAGE)
    healthy(at)
    assert "MEDICAL had a head leaning to it in 2, COST in 1" in " ".join(i.value for i in at.info)
    assert [m.value for m in at.metric] == ["0 of 2 runs", "0 of 2 runs", "1 of 2 runs", "0 of 2 runs"]
    assert [c.value for c in at.caption if "leaning" in c.value] == [
        "and a head leaning to it in 2 other runs",
        "and a head leaning to it in 1 other run",
    ]
    matched = at.dataframe[1].value  # a row per seed, a column per head of seed 0
    assert list(matched.columns) == ["Seed", "Head 1 of seed 0", "Head 2 of seed 0"]
    assert matched.values.tolist() == [[0, "leans MEDICAL", "COST specialist"], [1, "leans MEDICAL", "leans COST"]]
    for seed in seeds:
        del seed["leans"]  # a study saved before leaning heads were recorded: their labels say which lean
    (folder / STUDY).write_text(json.dumps({"recipe": {}, "results": seeds}))
    at = open_app(PAGE)
    healthy(at)
    assert "MEDICAL had a head leaning to it in 2, COST in 1" in " ".join(i.value for i in at.info)


def test_a_damaged_or_hostile_study_file_is_no_study(open_app, healthy, engine_env):
    folder = get_engine().study_folder("default", 5)
    folder.mkdir(parents=True)
    seed = {"seed": 0, "steps": 9, "accuracy": 0.5, "labels": ["a", "b"], "owns": [None], "necessity": [{}, {}]}
    for content in (
        "{not json",
        json.dumps({"recipe": {}, "results": [{"seed": "<b>x</b>"}]}),
        "[1]",
        json.dumps({"recipe": {}, "results": [seed]}),
    ):  # two heads named, one owner given
        (folder / STUDY).write_text(content)
        at = open_app(PAGE)
        healthy(at)
        assert "No study of 5 seeds of this recipe yet" in at.info[0].value


def test_a_saved_study_whose_runs_did_not_learn_names_no_head(open_app, healthy, engine_env):
    folder = get_engine().study_folder("default", 5)
    folder.mkdir(parents=True)
    necessity = [dict.fromkeys(("MEDICAL", "DOSAGE", "COST", "sex", "age", "specialty", "place"), 0.0)] * 2
    seeds = [
        {
            "seed": s,
            "steps": 3500,
            "accuracy": accuracy,
            "labels": ["leans COST", "generalist"],
            "owns": [None, None],
            "necessity": necessity,
            "leans": ["COST", None],
            "learned": False,
        }
        for s, accuracy in ((0, 0.24), (1, 0.40))
    ]
    (folder / STUDY).write_text(json.dumps({"recipe": {}, "results": seeds}))
    at = open_app(PAGE)
    healthy(at)
    assert at.info[0].value.startswith("None of the 2 runs learned to audit claims")
    assert "0.00 to 0.00" not in at.info[0].value and not at.metric
    assert list(at.dataframe[0].value["Heads"]) == [NOT_LEARNED, NOT_LEARNED]
