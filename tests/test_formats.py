"""A run folder's format: new runs record facts, never sentences; runs saved before there was a format read as they
did; a format this version does not read is refused in words (engine.runs.formats)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from data.rules import CLASSES
from engine.interpret.inference import Predictor
from engine.interpret.labels import head_evidence, head_label
from engine.interpret.ownership import KINDS
from engine.runs.layout import FORMAT
from engine.runs.listing import RunError, list_runs
from engine.runs.reading import read_config
from engine.runs.replay import replay

PAGE = "dashboard/runs.py"
CODE = re.compile(r"[a-z_]+")  # a code, as status.json records them: no sentence, not even a word with a capital


def saved_copy(trained_run_folder: Path, folder: Path) -> Path:
    shutil.copytree(trained_run_folder, folder)
    return folder


def rewrite(path: Path, change) -> None:
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


def test_a_trained_runs_status_holds_numbers_and_codes_and_is_said_as_before(trained_run_folder: Path) -> None:
    status = json.loads((trained_run_folder / "status.json").read_text())
    texts = [value for value in status.values() if isinstance(value, str)]
    assert "message" not in status and all(CODE.fullmatch(t) or t in CLASSES for t in texts), texts
    assert (status["status"], status["ended_by"]) == ("finished", "finished")
    assert json.loads((trained_run_folder / "config.json").read_text())["format"] == FORMAT
    snap = replay(trained_run_folder)  # what the Train page and the Runs page show of it
    assert snap.message.startswith(
        f"Finished 300 steps in {status['seconds']:.0f} s with "
        f"{snap.evals[-1].heldout_accuracy:.1%} of held-out claims right"
    )
    assert read_config(trained_run_folder).keys() == snap.config.keys() and "format" not in snap.config


def test_a_trained_runs_heads_are_saved_as_facts_and_worded_only_when_shown(
    trained_run_folder: Path, tmp_path: Path
) -> None:
    records = [json.loads(line) for line in (trained_run_folder / "metrics.jsonl").read_text().splitlines()]
    heads = [h for r in records if r["type"] == "specialization" for hs in r["heads"].values() for h in hs]
    assert heads and all(not {"label", "evidence"} & set(h) for h in heads)  # no sentence on disk
    assert {h["kind"] for h in heads} <= set(KINDS)
    shown = replay(trained_run_folder).specialization[-1].heads["decoder.0.cross"]
    # a run of format 2 saved a label and a sentence beside each head's facts: they are not read, the facts are
    run = saved_copy(trained_run_folder, tmp_path / "runs" / "format-2")
    rewrite(run / "config.json", lambda c: {**c, "format": 2})
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for record in lines:
        for specs in record.get("heads", {}).values() if record["type"] == "specialization" else ():
            for head in specs:
                head.update(label="an old label", evidence="an old sentence")
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    read = replay(run).specialization[-1].heads["decoder.0.cross"]
    assert read == shown and "an old" not in " ".join(head_label(h) + head_evidence(h) for h in read)


def test_a_run_saved_before_there_was_a_format_reads_as_it_did(trained_run_folder: Path, tmp_path: Path) -> None:
    run = saved_copy(trained_run_folder, tmp_path / "runs" / "unversioned")
    said = "Finished 300 steps in 7 s with 97.0% of held-out claims right."
    rewrite(run / "config.json", lambda c: {k: v for k, v in c.items() if k != "format"})
    rewrite(
        run / "status.json",
        lambda s: {
            "status": "finished",
            "message": said,
            "step": 300,
            "seconds": s["seconds"],
            "chance": s["chance"],
            "commonest": s["commonest"],
        },
    )
    assert replay(run).message == said  # as it was saved, word for word
    [listed] = list_runs(tmp_path / "runs")
    assert (listed.status, listed.step, listed.problem) == ("finished", 300, None)
    assert Predictor.from_run(run).step == 300

    # settings added since such a run was saved read as what it was trained with
    rewrite(
        run / "config.json",
        lambda c: {
            **{k: v for k, v in c.items() if k != "data_seed"},
            "seed": 7,
            "model": {"d_model": 32, "cross_keys": "embeddings", "cross_qk_init": 0.2},
        },
    )
    config = read_config(run)
    assert config["data_seed"] == 7  # its claims were drawn from its seed
    assert config["model"] == {
        "d_model": 32,
        "cross_keys": "embeddings",
        "cross_qk_init": 0.2,
        "encoder_qk_init": 0.02,
        "null_key": False,
        "positions": True,
    }


@pytest.mark.parametrize(
    ("found", "said"),
    [
        (
            FORMAT + 1,
            f"this run was saved by a newer Headwatch, in format {FORMAT + 1}; this version reads formats 1 "
            f"to {FORMAT}",
        ),
        (0, f"this run was saved by an older Headwatch, in format 0; this version reads formats 1 to {FORMAT}"),
    ],
)
def test_a_format_this_version_does_not_read_is_refused_in_words(
    open_app, saved_run, engine_env, healthy, found: int, said: str
) -> None:
    run = engine_env / saved_run
    rewrite(run / "config.json", lambda c: {**c, "format": found})
    with pytest.raises(RunError, match=re.escape(said)):
        replay(run)
    with pytest.raises(RunError, match=re.escape(said)):
        Predictor.from_run(run)
    at = open_app(PAGE)
    healthy(at)
    table = at.dataframe[0].value
    assert table.iloc[0]["Status"] == "other format"  # not damaged: for another version
    assert f"**{saved_run}**: {said}" in at.warning[0].value
    assert not [box for box in at.selectbox if box.key == "open_run"]  # nothing to open
