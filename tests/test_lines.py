"""Service lines: a claim of several billed items is cut into lines, each judged as a claim of its own, and the
claim's verdict is the worst line's, in the JSON of `engine predict` and the claims CSV."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from data.catalog import load_catalog
from data.lines import cut_lines
from data.reading import Reader
from data.rules import CANNOT_CHECK, VALID, check_claim, label_read
from data.tokenizer import Tokenizer
from data.vocabulary import entity_of, parse_claim
from engine.interpret.claim_lines import answer_lines
from engine.interpret.inference import Predictor
from engine.interpret.scored_csv import SCORED_COLUMNS, scored_rows
from engine.task.claims_csv import read_claims_csv

DATA = Path(__file__).resolve().parent / "data"
HANDWRITTEN = Path(__file__).resolve().parents[1] / "data" / "handwritten_claims.csv"
ISSUE_CLAIM = "Hypertension and diabetes: lisinopril 10 mg and metformin 500 mg, $40"
with (DATA / "service_lines.csv").open(newline="", encoding="utf-8") as file:
    SERVICE_LINES = list(csv.DictReader(file))


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


@pytest.fixture(scope="module")
def reader(catalog):
    return Reader(Tokenizer.from_catalog(catalog))


@pytest.fixture(scope="module")
def fits(catalog):
    def item_fits(item, diagnosis) -> bool:
        (kind, key), (_, dx) = entity_of(item), entity_of(diagnosis)
        return (catalog.drugs if kind == "drug" else catalog.procedures)[key].fits(dx)

    return item_fits


@pytest.fixture(scope="module")
def predictor(trained_run_folder):
    return Predictor.from_run(trained_run_folder)


def cut(reader, fits, text):
    return cut_lines(text, *reader.read(text), fits)


def test_the_issues_claim_is_two_lines_sharing_a_total_each_with_its_own_diagnosis(reader, fits):
    lines = cut(reader, fits, ISSUE_CLAIM)
    assert [line.text for line in lines.lines] == ["lisinopril 10 mg", "metformin 500 mg"]
    assert [[t.surface for t in line.tokens if t.category != "other"] for line in lines.lines] == [
        ["Hypertension", "lisinopril", "10 mg"],
        ["diabetes", "metformin", "500 mg"],
    ]
    assert lines.total_note() == (
        "$40 is the claim's total, not a price of one of its 2 lines, so no line is judged on its price"
    )


def test_each_number_goes_to_its_item_in_every_wording(reader, fits):
    bulleted = cut(reader, fits, "Afib, 66 yo M:\n• warfarin 5 mg $12\n• diltiazem 240 mg $45\n• Holter monitor $200")
    assert [line.text for line in bulleted.lines] == [
        "warfarin 5 mg $12",
        "diltiazem 240 mg $45",
        "Holter monitor $200",
    ]
    assert bulleted.total_note() is None
    assert all({"66 yo", "M", "Afib"} <= {t.surface for t in line.tokens} for line in bulleted.lines)
    dose_first = cut(reader, fits, "Hypertension: 10 mg of lisinopril and 25 mg of hydrochlorothiazide, $30")
    assert [line.text for line in dose_first.lines] == ["10 mg of lisinopril", "25 mg of hydrochlorothiazide"]


def test_an_unknown_drug_with_its_own_dose_is_a_line_that_cannot_be_judged(reader, fits):
    lines = cut(reader, fits, "Migraine: sumatriptan 100 mg $40 and gabapentin 300 mg $20")
    known, unknown = lines.lines
    assert known.refusal(VALID) is None and known.text == "sumatriptan 100 mg $40"
    assert unknown.refusal(VALID).sentence() == (
        "Headwatch cannot judge what was billed: 'gabapentin' is not a drug Headwatch knows."
    )


def test_an_unknown_item_without_a_number_is_a_line_that_cannot_be_judged(reader, fits):
    for text, unknown, line_text in [
        ("Hypertension: lisinopril 10 mg and gabapentin, $40", "gabapentin", "gabapentin"),
        ("Diabetes, metformin 500 mg, rx insulin, $40", "insulin", "insulin"),
        ("Knee arthritis: knee x-ray $60 plus arthroscopy $900", "arthroscopy", "arthroscopy $900"),
    ]:
        lines = cut(reader, fits, text)
        assert len(lines.lines) == 2 and lines.lines[1].text == line_text, text
        assert lines.lines[0].refusal(VALID) is None
        assert f"'{unknown}' is not a " in lines.lines[1].refusal(VALID).sentence()


def test_a_word_after_an_items_price_or_its_dose_is_not_taken_for_another_item(reader, fits):
    """ "$40, neuropathy" may be a diagnosis; "20 mg qhs" says when it is taken; "thirty day fill" how long."""
    for text in (
        "Diabetes, metformin 500 mg $40, neuropathy",
        "LBP flexeril 15mg qhs $12",
        "Hypothyroid, levothyroxine 0.1 mg, thirty day fill: $11",
    ):
        assert cut(reader, fits, text) is None, text


def test_the_same_item_twice_each_with_its_own_numbers_is_two_lines(reader, fits, catalog):
    lines = cut(reader, fits, "Diabetes, metformin 500 mg $10 and metformin 9000 mg $20")
    assert [line.text for line in lines.lines] == ["metformin 500 mg $10", "metformin 9000 mg $20"]
    assert [
        label_read(check_claim(parse_claim(line.encoded()), catalog), line.reading.parts) for line in lines.lines
    ] == [(VALID, "NONE"), ("INVALID", "DOSAGE")]
    assert cut(reader, fits, "BPH: TURP (transurethral prostate resection) $2000") is None  # one item, named twice


def test_a_claim_of_one_item_is_not_cut_and_answers_as_before(reader, fits, predictor):
    texts = [row["text"] for row in csv.DictReader(HANDWRITTEN.open(newline="", encoding="utf-8"))]
    assert len(texts) == 241 and all(cut(reader, fits, text) is None for text in texts)
    assert not any("lines" in p.to_json() for p in predictor.predict_many(texts))


def test_the_rules_checker_judges_each_hand_written_line_as_expected(reader, fits, catalog):
    for row in SERVICE_LINES:
        lines = cut(reader, fits, row["text"])
        said = []
        for line in lines.lines:
            verdict, reason = label_read(check_claim(parse_claim(line.encoded()), catalog), line.reading.parts)
            said.append(
                "CANNOT" if line.unread_item or verdict == CANNOT_CHECK else VALID if verdict == VALID else reason
            )
        assert said == row["line_outcomes"].split(), row["text"]


def said(p) -> str:
    return "CANNOT" if p.refusal else p.verdict if p.verdict == "VALID" else p.reason


def assert_worst_line(p) -> None:
    """INVALID if a line is (for that line's reason, as sure), else cannot judge if a line cannot be judged, else
    VALID as sure as the least sure line."""
    lines = [said(line) for line in p.lines]
    invalid = [line for line in p.lines if said(line) not in ("VALID", "CANNOT")]
    if invalid:
        assert (said(p), p.confidence) in {(said(line), line.confidence) for line in invalid}
    elif "CANNOT" in lines:
        assert said(p) == "CANNOT" and all(
            f"on line {n} " in p.refusal.sentence() for n, line in enumerate(p.lines, 1) if line.refusal
        )
    else:
        assert said(p) == "VALID" and p.confidence == min(line.confidence for line in p.lines)


def test_the_claims_verdict_is_its_worst_lines(predictor):
    predictions = predictor.predict_many([row["text"] for row in SERVICE_LINES])
    for row, p in zip(SERVICE_LINES, predictions, strict=True):
        assert len(p.lines) == len(row["line_outcomes"].split())
        assert_worst_line(p)
        assert [line.line_json() for line in p.lines] == [
            line.line_json() for line in predictor.predict(row["text"], with_ablation=False).lines
        ]
    refused = predictor.predict("Migraine: sumatriptan 100 mg $40 and gabapentin 300 mg $20")
    assert refused.lines[1].verdict is None and refused.lines[1].refusal is not None
    assert_worst_line(refused)


def test_the_rules_checker_answers_for_the_worst_line(predictor):
    p = predictor.predict("Hypertension: lisinopril 20 mg $10; sertraline 50 mg $20")
    assert [line.rules for line in p.lines] == [("VALID", "NONE"), ("INVALID", "MEDICAL")]
    assert p.rules == ("INVALID", "MEDICAL")
    assert p.rule_findings == ("MEDICAL: Sertraline is not a treatment for essential hypertension",)


def test_predict_json_carries_each_line(predictor):
    out = io.StringIO()
    answer_lines(predictor, io.BytesIO(f"{ISSUE_CLAIM}\nDiabetes, metformin 500 mg, $40\n".encode()), out)
    several, one = map(json.loads, out.getvalue().splitlines())
    assert [
        (line["text"], line["verdict"] in ("VALID", "INVALID"), line["cannot_judge"]) for line in several["lines"]
    ] == [("lisinopril 10 mg", True, None), ("metformin 500 mg", True, None)]
    assert [[term["meaning"] for term in line["terms"]] for line in several["lines"]] == [
        ["Essential hypertension", "Lisinopril", "10 mg"],
        ["Type 2 diabetes mellitus", "Metformin", "500 mg"],
    ]
    assert several["lines_note"].startswith("$40 is the claim's total")
    assert "lines" not in one


def test_the_scored_csv_summarises_the_lines(predictor):
    claims = read_claims_csv(f'text\n"{ISSUE_CLAIM}"\n"Diabetes, metformin 500 mg, $40"\n'.encode())
    several, one = (dict(zip(SCORED_COLUMNS, row, strict=True)) for row in scored_rows(predictor, claims))
    first, second, note = several["lines"].split("; ")
    assert first.startswith("1. lisinopril 10 mg: ") and second.startswith("2. metformin 500 mg: ")
    assert note.startswith("$40 is the claim's total") and one["lines"] == ""
