"""Hostile run folders and absurd input in AppTest: a damaged file breaks no page for anyone, a link never leaks a
server file, and exports are safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
import torch

from dashboard.engine_resource import get_engine
from engine.interpret.scored_csv import scored_csv
from engine.task.claims_csv import read_claims_csv

PAGES = ("dashboard/runs.py", "dashboard/inspect_claim.py", "dashboard/specialization.py", "dashboard/story.py")


def page_text(at) -> str:
    return " ".join(e.value for kind in ("error", "warning", "info", "caption", "markdown") for e in getattr(at, kind))


def spoil_config(run: Path) -> None:
    (run / "config.json").write_text("[1, 2]")


def spoil_seed(run: Path) -> None:
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "seed": "x"}))


def spoil_metrics(run: Path) -> None:
    with open(run / "metrics.jsonl", "a") as file:
        file.write('[1, 2]\n{"type": "eval", "step": "x"}\n')


def spoil_status(run: Path) -> None:
    (run / "status.json").write_text("[1]")


def spoil_status_word(run: Path) -> None:
    status = json.loads((run / "status.json").read_text())
    (run / "status.json").write_text(json.dumps({**status, "status": "exploded"}))


def spoil_beta2(run: Path) -> None:
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "beta2": "x"}))


def spoil_checkpoint(run: Path) -> None:
    (run / "checkpoints" / "latest.pt").write_bytes(b"")


def spoil_vocabulary(run: Path) -> None:
    saved = json.loads((run / "tokenizer.json").read_text())
    (run / "tokenizer.json").write_text(json.dumps({**saved, "vocab": saved["vocab"][:-3]}))


def spoil_weights(run: Path) -> None:
    path = run / "checkpoints" / "latest.pt"
    payload = torch.load(path, weights_only=True)
    payload["model"] = {
        k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in payload["model"].items()
    }
    torch.save(payload, path)


def spoil_heads(run: Path) -> None:
    with open(run / "metrics.jsonl", "a") as file:
        file.write(
            '{"type": "specialization", "step": 301, "heads": {"decoder.0.cross": []}}\n'
            '{"type": "optim", "step": 301, "heads": {"decoder.0.cross": []}, "groups": {}}\n'
        )


def spoil_probe(run: Path) -> None:
    probe = json.loads((run / "probe.json").read_text())
    (run / "probe.json").write_text(
        json.dumps([{**c, "tokens": c["tokens"][:1], "categories": c["categories"][:1]} for c in probe])
    )


def spoil_huge_seed(run: Path) -> None:
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "seed": 10**40}))


def spoil_attention(run: Path) -> None:
    """One snapshot with a single query row, one without the cross-attention layer, and a head that read nothing."""
    first, second = sorted((run / "attention").glob("step_*.pt"))[:2]
    weights = torch.load(first, weights_only=True)
    torch.save({name: w[:, :, :1] for name, w in weights.items()}, first)
    weights = torch.load(second, weights_only=True)
    torch.save({name: w for name, w in weights.items() if not name.endswith(".cross")}, second)
    record = json.loads(
        [line for line in (run / "metrics.jsonl").read_text().splitlines() if '"specialization"' in line][-1]
    )
    record["heads"]["decoder.0.cross"][0]["shares"] = {}
    with open(run / "metrics.jsonl", "a") as file:
        file.write(json.dumps({**record, "step": 301}) + "\n")


def spoil_empty_probe(run: Path) -> None:
    probe = json.loads((run / "probe.json").read_text())
    (run / "probe.json").write_text(json.dumps([{**c, "tokens": [], "categories": []} for c in probe]))


SPOILERS = (
    spoil_config,
    spoil_seed,
    spoil_metrics,
    spoil_status,
    spoil_checkpoint,
    spoil_vocabulary,
    spoil_weights,
    spoil_heads,
    spoil_probe,
    spoil_huge_seed,
    spoil_attention,
    spoil_empty_probe,
    spoil_status_word,
    spoil_beta2,
)


@pytest.mark.parametrize("spoil", SPOILERS, ids=lambda f: f.__name__)
@pytest.mark.slow
def test_a_damaged_run_breaks_no_page(open_app, engine_env, saved_run, healthy, spoil):
    damaged = shutil.copytree(engine_env / saved_run, engine_env / "damaged")
    spoil(damaged)
    for page in PAGES:
        for viewed in (None, "damaged"):
            at = open_app(page)
            if viewed:
                at.session_state["replay_run"] = viewed
                at.run()
            healthy(at)
            assert str(engine_env) not in page_text(at)
    at = open_app("dashboard/runs.py")
    table = at.dataframe[0].value
    row = table[table["Run"] == "damaged"].iloc[0]
    if spoil in (spoil_config, spoil_seed, spoil_huge_seed, spoil_beta2):
        assert row["Status"] == "damaged" and "**damaged**: config.json is damaged" in at.warning[0].value
    if spoil in (spoil_status, spoil_status_word):
        assert row["Status"] == "unknown" and "how the run ended is unknown" in at.warning[0].value


def test_a_linked_checkpoint_is_not_offered_for_download(open_app, engine_env, saved_run, healthy, tmp_path):
    (tmp_path / "secret.txt").write_text("root:x:0:0")
    link = shutil.copytree(engine_env / saved_run, engine_env / "linked")
    (link / "checkpoints" / "latest.pt").unlink()
    (link / "checkpoints" / "latest.pt").symlink_to(tmp_path / "secret.txt")
    at = open_app("dashboard/runs.py")
    at.selectbox(key="export_run").set_value("linked").run()
    healthy(at)
    assert "Weights (PyTorch state_dict)" not in {b.proto.label for b in at.download_button}
    assert "outside its run folder" in page_text(at) and str(tmp_path) not in page_text(at)
    assert {"Metrics (CSV)", "Story report (HTML)"} <= {b.proto.label for b in at.download_button}


def test_a_run_without_weights_still_exports_its_metrics_and_report(open_app, engine_env, saved_run, healthy):
    (engine_env / saved_run / "checkpoints" / "latest.pt").unlink()  # killed in its first seconds
    at = open_app("dashboard/runs.py")
    healthy(at)
    assert {b.proto.label for b in at.download_button} == {"Metrics (CSV)", "Story report (HTML)"}
    assert "No weights to export" in page_text(at)


FORMULAS = ('=HYPERLINK("http://x","click")', "=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1)")


def test_scored_claims_csv_never_holds_a_formula(open_app, saved_run, healthy):
    rows = [[f"{formula} Diabetes, metformin 500 mg, $40"] for formula in FORMULAS]
    buffer = io.StringIO()
    csv.writer(buffer).writerows([["text"], *rows])
    results = scored_csv(get_engine().score_claims(read_claims_csv(buffer.getvalue().encode()), saved_run))
    scored = list(csv.reader(io.StringIO(results.decode())))
    assert [row[0] for row in scored[1:]] == [f"'{formula} Diabetes, metformin 500 mg, $40" for formula in FORMULAS]
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in scored for cell in row)


def test_the_metrics_csv_has_every_step_and_keeps_its_numbers_as_numbers(saved_run, engine_env):
    rows = list(csv.reader(io.StringIO(get_engine().metrics_csv(saved_run).decode())))
    header, body = rows[0], rows[1:]
    assert header[:4] == ["step", "seconds", "train_loss", "heldout_loss"]
    assert [int(row[0]) for row in body] == list(range(301))  # step 0's evaluation, then every training step
    assert "decoder.0.cross head 1 mean_sqrt_v" in header and "decoder.0.cross head 4 kind" in header
    assert header[-3:] == [f"decoder.0.cross head 4 {fact}" for fact in ("kind", "reason", "shares with")]
    numeric = [i for i, name in enumerate(header) if not name.endswith((" kind", " reason", " shares with"))]
    assert all(float(row[i]) >= 0 for row in body for i in numeric if row[i])
    evaluated = [row for row in body if row[header.index("heldout_accuracy")]]
    assert len(evaluated) == len(get_engine().replay(saved_run).evals)


ABSURD = (
    "Diabetes, metformin NaN mg, $40",
    "Diabetes, metformin inf mg, $40",
    "Diabetes, metformin 500 mg, $1e309",
    "Diabetes, metformin " + "9" * 400 + " mg, $40",
    "Asthma, montelukast 10 mg, $-inf",
)


def test_absurd_numbers_are_flagged_and_break_nothing(open_app, saved_run, healthy):
    at = open_app("dashboard/inspect_claim.py")
    at.session_state["replay_run"] = saved_run
    at.run()
    for text in ABSURD:
        at.text_area(key="claim_text").set_value(text).run()
        healthy(at)
        assert any("not" in w.value for w in at.warning), text  # "is not a number" / "is not plausible"
        assert all(abs(n.value) <= 1e12 for n in at.number_input)


def test_absurd_numbers_on_the_live_run(open_app, rerun, healthy):
    from engine.training.presets import preset

    get_engine().start(preset("quick"))
    at = open_app("dashboard/inspect_claim.py")
    rerun(at, lambda: get_engine().predictor() is not None and bool(at.metric))
    for text in ABSURD:
        at.text_area(key="claim_text").set_value(text).run()
        healthy(at)
