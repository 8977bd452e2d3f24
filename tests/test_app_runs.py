"""Runs page in AppTest: the list (damaged runs included), reopening, comparing, exporting and importing claims."""

from __future__ import annotations

import csv
import io
import json
import shutil

import pytest
from support import wait_for

from dashboard.engine_resource import get_engine
from data.generator import generate_claims

PAGE = "dashboard/runs.py"


def titles(at) -> list[str]:
    return [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]


def claims_csv(n: int = 80) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["text", "verdict", "reason"])
    writer.writerows([c.text, c.verdict, c.reason] for c in generate_claims(n, seed=7))
    return buffer.getvalue().encode()


def test_no_runs_yet(open_app, healthy):
    at = open_app(PAGE)
    healthy(at)
    assert "No saved runs yet" in at.info[0].value
    assert "Comparing needs two saved runs." in [c.value for c in at.caption]
    assert at.file_uploader(key="claims_upload")


def test_list_open_compare_and_export(open_app, saved_run, engine_env, healthy):
    shutil.copytree(engine_env / saved_run, engine_env / f"{saved_run}-copy")
    (engine_env / "damaged-run").mkdir()
    (engine_env / "damaged-run" / "config.json").write_text("{not json")
    at = open_app(PAGE)
    healthy(at)
    table = at.dataframe[0].value
    assert set(table["Run"]) == {saved_run, f"{saved_run}-copy", "damaged-run"}
    assert table[table["Run"] == "damaged-run"].iloc[0]["Status"] == "damaged"
    assert "**damaged-run**: config.json is damaged (not readable JSON)" in at.warning[0].value
    mine = table[table["Run"] == saved_run].iloc[0]
    assert (mine["Recipe"], mine["Steps"], mine["Status"]) == ("quick", 300, "finished")
    analysis = get_engine().analyze(saved_run)  # the Specialization page's verdict
    assert mine["Heads"] == "; ".join(h["label"] for h in analysis["heads"]["decoder.0.cross"])

    assert [t for t in titles(at) if "step 300: what each check needs" in t] == [
        f"Run {letter}, step 300: what each check needs from each head" for letter in "AB"
    ]
    assert titles(at).count("Runs A and B: held-out accuracy and training loss") == 1  # one chart, both runs
    compared = at.dataframe[1].value
    assert set(compared["Run"]) == {saved_run, f"{saved_run}-copy"}
    assert compared["Final held-out accuracy"].iloc[0] == pytest.approx(
        get_engine().replay(compared["Run"].iloc[0]).evals[-1].heldout_accuracy
    )
    assert {b.proto.label for b in at.download_button} == {
        "Metrics (CSV)",
        "Weights (PyTorch state_dict)",
        "Story report (HTML)",
    }

    at.selectbox(key="open_run").set_value(saved_run)
    at.button(key="open").click().run()
    healthy(at)
    assert at.session_state["replay_run"] == saved_run
    assert f"Viewing saved run **{saved_run}** (read-only)" in at.info[0].value


def test_a_run_that_did_not_learn_has_no_heads_named(open_app, saved_run, engine_env, healthy):
    status = engine_env / saved_run / "status.json"
    accuracy = get_engine().replay(saved_run).evals[-1].heldout_accuracy
    status.write_text(json.dumps({**json.loads(status.read_text()), "chance": accuracy}))  # as good as one answer
    at = open_app(PAGE)
    healthy(at)
    mine = at.dataframe[0].value.iloc[0]
    assert mine["Heads"] == "not named: it did no better than answering its commonest outcome to every claim"


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "is empty"),
        (b"claim,amount\nfoo,1\n", "has no 'text' column"),
        (b'text,verdict\n"Diabetes, metformin",MAYBE\n', "verdict must be VALID or INVALID"),
        (b"text\n\xff\xfe\n", "not UTF-8"),
    ],
    ids=["empty", "no-text-column", "bad-label", "not-utf8"],
)
def test_a_bad_claims_file_is_refused_by_name_and_changes_nothing(open_app, healthy, data, problem):
    at = open_app(PAGE)
    at.file_uploader(key="claims_upload").upload("claims.csv", data, "text/csv")
    at.run()
    healthy(at)
    assert problem in at.error[0].value
    assert "score" not in [b.key for b in at.button]
    assert get_engine().snapshot().status == "idle" and not get_engine().runs_dir.exists()


def test_a_claims_file_is_scored_and_trained_on(open_app, saved_run, healthy):
    at = open_app(PAGE)
    at.file_uploader(key="claims_upload").upload("claims.csv", claims_csv(), "text/csv")
    at.run()
    healthy(at)
    assert "80 claims read from claims.csv, 80 of them labelled" in at.success[0].value
    at.selectbox(key="score_model").set_value(saved_run)
    at.button(key="score").click().run()
    healthy(at)
    assert at.download_button(key="scored_csv").proto.label == "Download the results (CSV)"
    assert "The first 5 of 80:" in [c.value for c in at.caption]
    scored = at.dataframe[-1].value
    assert len(scored) == 80 and list(scored.columns) == [
        "Claim",
        "The model says",
        "How sure",
        "The rules say",
        "Not read",
        "Service lines",
        "Problem",
    ]
    agree = int((scored["The model says"] == scored["The rules say"]).sum())
    refused = scored["The model says"] == "cannot judge"  # generated claims that bill no item
    assert f"agree on {agree:,} of the " in " ".join(m.value for m in at.markdown)
    assert f"{int(refused.sum()):,} could not be judged on what was read" in " ".join(m.value for m in at.markdown)
    assert (scored.loc[refused, "The rules say"] == "cannot check").all()
    both = ~refused & ~scored["The rules say"].isin(["cannot check", "can't tell"])
    disagree = (scored["The model says"] != scored["The rules say"]) & both
    assert disagree.tolist() == sorted(disagree, reverse=True)  # disagreements first

    engine = get_engine()
    at.selectbox(key="import_recipe").set_value("quick")
    at.button(key="train_on_claims").click().run()
    healthy(at)
    assert "Training started (quick recipe)" in at.success[-1].value
    assert engine.snapshot().config["claims_csv"].endswith(".csv")
    wait_for(lambda: engine.snapshot().status in ("finished", "failed"))
    assert engine.snapshot().status == "finished", engine.snapshot().message


@pytest.mark.slow
def test_too_few_labelled_claims_are_refused_before_the_live_run_is_touched(open_app, healthy):
    from engine.training.presets import preset

    engine = get_engine()
    engine.start(preset("quick"))
    wait_for(lambda: engine.snapshot().status == "finished")
    before = engine.snapshot()
    at = open_app(PAGE)
    at.file_uploader(key="claims_upload").upload("small.csv", claims_csv(10), "text/csv")
    at.run()
    assert "10 claims read" in at.success[0].value
    assert "at least 50 claims" in at.button(key="train_on_claims").proto.help  # said up front
    at.button(key="train_on_claims").click().run()
    healthy(at)
    assert "Only 10 of the file's 10 claims could be labelled" in at.error[0].value
    assert "CsvProblem" not in at.error[0].value and not [s for s in at.success if "Training started" in s.value]
    assert engine.snapshot() is before  # the live run and its model are still there


def test_one_claim_is_one_claim(open_app, healthy):
    at = open_app(PAGE)
    at.file_uploader(key="claims_upload").upload("one.csv", claims_csv(1), "text/csv")
    at.run()
    healthy(at)
    assert at.success[0].value.startswith("1 claim read from one.csv")


def test_the_opened_run_stays_chosen_after_visiting_another_page(open_app, saved_run, engine_env, healthy):
    shutil.copytree(engine_env / saved_run, engine_env / f"{saved_run}-copy")
    at = open_app(PAGE)
    first = at.selectbox(key="open_run").options[0]
    other = next(r for r in (saved_run, f"{saved_run}-copy") if r != first)
    at.selectbox(key="open_run").set_value(other).run()
    at.button(key="open").click().run()
    at.switch_page("dashboard/story.py").run()
    at.switch_page(PAGE).run()
    healthy(at)
    assert at.selectbox(key="open_run").value == other
