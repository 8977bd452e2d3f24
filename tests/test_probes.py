"""Where the verdict forms (engine.interpret.probes): probes that find a label where it is and not where it is not,
vectors read at the right field, the plain lines, the tables a run records while it trains, and its file read as
hostile."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from support import probe_table_with

from data.generator import generate_claims
from data.rules import REASONS
from data.vocabulary import CATEGORIES
from engine.interpret.probes import (
    FIELDS,
    MIN_CLAIMS,
    SOURCES,
    Examples,
    field_vectors,
    hub_line,
    probe_accuracy,
    read_probes,
    recorded_steps,
    save_probes,
    where_it_forms,
)
from engine.model.transformer import ModelConfig
from engine.recording.events import RunWarning, Status, Weights
from engine.reports.analyze import probe_report
from engine.runs.ending import Ending
from engine.runs.layout import PROBES
from engine.runs.reading import RunError
from engine.runs.words import warning_text
from engine.task.claims_model import ClaimsTransformer, sized_for_claims
from engine.task.dataset import ClaimData, ClaimTensors, encode_claims
from engine.training.observers import ProbeObserver


def examples(shift: float, rows: int = 400, seed: int = 0) -> Examples:
    """One probing problem of 8-number vectors whose third number is `shift` higher for one label, lower for the
    other (0: no number carries the label)."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(rows) % 2 == 0
    features = torch.randn(rows, 8, generator=generator)
    features[:, 2] += torch.where(labels, shift, -shift)
    return Examples(features[None], labels[None], torch.ones(1, rows, dtype=torch.bool))


def stacked(*problems: Examples) -> Examples:
    return Examples(*(torch.cat([getattr(p, name) for p in problems]) for name in ("features", "labels", "used")))


def test_a_probe_finds_the_label_in_the_field_that_carries_it_and_not_in_one_that_does_not() -> None:
    fit = stacked(examples(1.5), examples(0.0))
    carrying, empty = probe_accuracy(fit, stacked(examples(1.5, seed=1), examples(0.0, seed=1))).tolist()
    assert carrying > 0.9  # 1.5 standard deviations either side: about 93% of claims fall on their own side
    assert abs(empty - 0.5) < 0.08


def test_a_probe_is_not_measured_on_too_few_claims_and_balances_uneven_labels() -> None:
    fit, score = examples(1.0), examples(1.0, seed=1)
    few = Examples(fit.features, fit.labels, fit.used & (~fit.labels | (torch.arange(400) < 2 * (MIN_CLAIMS - 1))))
    assert math.isnan(probe_accuracy(few, score).item())
    # ten valid claims for each of the other label: fitted unweighted, a probe leans to "valid" and misses more of
    # the others (balanced accuracy 0.77); each label weighing half, 0.86
    uneven = Examples(fit.features, fit.labels, fit.used & (~fit.labels | (torch.arange(400) % 20 == 0)))
    assert probe_accuracy(uneven, score).item() > 0.82


def test_vectors_are_read_at_each_field_and_a_missing_field_is_absent() -> None:
    torch.manual_seed(0)
    model = ClaimsTransformer(ModelConfig(vocab_size=20, n_categories=len(CATEGORIES), d_model=16, d_ff=16))
    category = {name: CATEGORIES.index(name) for name in CATEGORIES}
    # a claim of a diagnosis, a drug and a procedure (both billed items) and a word; another of a dose only
    tokens = torch.tensor([[3, 4, 5, 6], [7, 0, 0, 0]])
    categories = torch.tensor(
        [
            [category["diagnosis"], category["drug"], category["procedure"], category["other"]],
            [category["dose"], 0, 0, 0],
        ]
    )
    vectors, present = field_vectors(model, ClaimTensors(tokens, categories, torch.tensor([0, 1])))
    embedded = model.token_embedding(tokens) + model.category_embedding(categories)
    fields = list(FIELDS)
    torch.testing.assert_close(vectors[SOURCES.index("embeddings"), fields.index("diagnosis"), 0], embedded[0, 0])
    torch.testing.assert_close(vectors[SOURCES.index("embeddings"), fields.index("item"), 0], embedded[0, 1:3].mean(0))
    memory = model.encode(tokens, categories)
    torch.testing.assert_close(vectors[SOURCES.index("encoder"), fields.index("dose"), 1], memory.tokens[-1])
    assert present[:, 0].tolist() == [f in ("diagnosis", "item", "words") for f in FIELDS]
    assert present[:, 1].tolist() == [f == "dose" for f in FIELDS]


def test_plain_lines_say_where_each_verdict_forms_and_whether_the_item_is_a_hub() -> None:
    hub = probe_table_with(
        {
            "MEDICAL": {"item": 0.97},
            "DOSAGE": {"item": 0.9, "dose": 0.95},
            "COST": {"item": 0.99},
            "ADMIN": dict.fromkeys(FIELDS, 0.9),
        }
    )
    assert where_it_forms(hub, "DOSAGE") == "DOSAGE forms at the billed item and the dose."
    assert where_it_forms(hub, "ADMIN") == "ADMIN forms everywhere: at every field measured."
    assert hub_line(hub) == "The billed item is a hub: MEDICAL, DOSAGE and COST all form there."
    # as sure at the dose, but its word alone already said as much: nothing formed there
    apart = probe_table_with({"DOSAGE": {"dose": 0.95}, "COST": {"item": 0.99}})
    apart.accuracy["embeddings"]["DOSAGE"]["dose"] = 0.9
    assert where_it_forms(apart, "DOSAGE").startswith("DOSAGE forms at no single field")
    assert hub_line(apart) == "The billed item is no hub: of MEDICAL, DOSAGE and COST, only COST forms there."


def test_a_run_records_its_tables_while_it_trains_and_analyze_gives_the_last_again(trained_run_folder: Path) -> None:
    tables = read_probes(trained_run_folder)
    assert [t.step for t in tables] == recorded_steps(300) == [0, 200, 300]
    assert all(t.seconds > 0 for t in tables)
    last = tables[-1]
    for reason in REASONS:
        for field in ("diagnosis", "item"):  # in nearly every claim: always measured
            assert 0 <= last.cell("encoder", reason, field) <= 1 and last.claims[reason][field] > 2 * MIN_CLAIMS
    report = "\n".join(probe_report(trained_run_folder))
    row = next(line.split()[1:] for line in report.splitlines() if line.startswith("DOSAGE "))  # its table row
    recorded = [
        f"{last.cell('encoder', 'DOSAGE', f):.2f}/{last.cell('embeddings', 'DOSAGE', f):.2f}"
        if not math.isnan(last.cell("encoder", "DOSAGE", f))
        else "-"
        for f in FIELDS
    ]
    assert row == recorded
    assert "Recorded while training at steps 0, 200, 300." in report


def test_the_schedule_is_log_spaced_and_ends_at_the_last_step() -> None:
    assert recorded_steps(3500) == [0, 200, 800, 3200, 3500]
    assert recorded_steps(60) == [0, 60]


def test_saved_tables_read_back_and_a_hostile_file_is_refused_in_plain_words(tmp_path: Path) -> None:
    first, second = probe_table_with({"COST": {"item": 0.99}}, step=0), probe_table_with({}, step=200)
    first.accuracy["encoder"]["ADMIN"]["place"] = float("nan")
    save_probes(tmp_path, [first, second])
    back = read_probes(tmp_path)
    assert [t.step for t in back] == [0, 200] and back[0].cell("encoder", "COST", "item") == 0.99
    assert math.isnan(back[0].cell("encoder", "ADMIN", "place"))
    saved = json.loads((tmp_path / PROBES).read_text())
    saved["tables"][1]["accuracy"]["encoder"]["COST"]["item"] = 7  # not a share: that table is left out
    (tmp_path / PROBES).write_text(json.dumps(saved))
    assert [t.step for t in read_probes(tmp_path)] == [0]
    saved["tables"][0]["claims"]["COST"]["item"] = "many"
    (tmp_path / PROBES).write_text(json.dumps(saved))
    with pytest.raises(RunError, match=r"probes\.json is damaged"):
        read_probes(tmp_path)
    (tmp_path / PROBES).write_text('{"format": "something else", "tables": []}')
    with pytest.raises(RunError, match="not a table of probes Headwatch writes"):
        read_probes(tmp_path)
    outside = tmp_path.parent / "elsewhere.json"
    save_probes(tmp_path, [first])
    os.replace(tmp_path / PROBES, outside)
    (tmp_path / PROBES).symlink_to(outside)
    with pytest.raises(RunError, match="outside its run folder"):
        read_probes(tmp_path)
    assert read_probes(tmp_path / "missing") == []


def test_the_observer_records_on_schedule_and_at_the_end_and_a_folder_it_cannot_write_stops_only_it(
    tmp_path: Path, tokenizer
) -> None:
    claims = encode_claims(generate_claims(400, 0), tokenizer, 48)
    data = ClaimData(tokenizer, claims, claims, claims, ())
    config = sized_for_claims(ModelConfig(d_model=16, d_ff=16), tokenizer)
    torch.manual_seed(0)
    weights = ClaimsTransformer(config).state_dict()

    def heard_by(observer: ProbeObserver, steps: list[int]) -> None:
        for step in steps:
            observer.hear(Weights(step, weights, config.to_dict(), keep=False))
        observer.hear(Status("finished", steps[-1], 1.0, Ending("finished")))

    kept = ProbeObserver(tmp_path, data, total_steps=900)
    heard_by(kept, [0, 10, 100, 300, 700, 900])  # evaluations fall between the recorded steps 0, 200, 800, 900
    assert [t.step for t in read_probes(tmp_path)] == [0, 300, 900] and kept.seconds > 0
    told: list[RunWarning] = []
    blocked = tmp_path / "a file"
    blocked.write_text("")
    stopped = ProbeObserver(blocked / "run", data, total_steps=900, on_failed=told.append)
    heard_by(stopped, [0, 300, 900])
    assert len(told) == 1
    assert warning_text(told[0].files, told[0].error).startswith(
        "Training goes on, but where its verdicts form is no longer saved: "
    )
    # once the run's own files stop being saved, the page says so; these tables neither go on nor take its place
    unsaved = ProbeObserver(tmp_path / "unsaved", data, 900, told.append, SimpleNamespace(failed="No space left"))
    heard_by(unsaved, [0, 300, 900])
    assert len(told) == 1 and not (tmp_path / "unsaved").exists()
