"""What a pasted claim was read as: unknown terms named, near misses read with a note (never one catalog term taken
for another), verdicts that rest on unread words refused, the rules checker's "cannot check", other languages."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from data.generator import generate_claims
from data.reading import Reader
from data.rules import CANNOT_CHECK, NO_REASON, REASONS, VALID, WHOLE, check_claim, label, label_read, unchecked
from data.tokenizer import Tokenizer
from data.vocabulary import parse_claim

DATA = Path(__file__).resolve().parent / "data"
HANDWRITTEN = Path(__file__).resolve().parents[1] / "data" / "handwritten_claims.csv"
# Claims written after the reading was built, never trained on: unknown terms, misspellings, words near two
# catalog terms, other languages and noise.
with (DATA / "unread_claims.csv").open(newline="", encoding="utf-8") as file:
    UNREAD_CLAIMS = list(csv.DictReader(file))


def claims_of(kind: str) -> list:
    return [pytest.param(row, id=row["text"]) for row in UNREAD_CLAIMS if row["kind"] == kind]


@pytest.fixture(scope="module")
def reader(tokenizer):
    return Reader(tokenizer)


def test_every_answer_rests_on_the_unread_diagnosis_or_item_in_the_issues_claim(reader):
    _, reading = reader.read("Heart transplant for a common cold, 54 yo F, $5")
    assert reading.refusal(VALID).sentence() == (
        "Headwatch cannot judge whether the billed item fits the diagnosis or what was billed: 'Heart transplant' is "
        "not a diagnosis, drug or procedure Headwatch knows; 'common cold' is not a diagnosis Headwatch knows."
    )
    assert {outcome: reading.refusal(outcome).parts for outcome in REASONS} == {
        "MEDICAL": ("diagnosis", "item"),
        "DOSAGE": ("item",),
        "COST": ("item",),
        "ADMIN": ("diagnosis", "item"),
    }


def test_the_report_says_what_was_read_as_what_field_and_what_was_not(reader):
    _, reading = reader.read("Heart transplant for a common cold, 54 yo F, $5")
    assert [(t.surface, t.field, t.meaning) for t in reading.read] == [
        ("54 yo", "age", "54 years"),
        ("F", "sex", "female"),
        ("$5", "amount", "$5.00"),
    ]
    assert [u.surface for u in reading.unread] == ["Heart transplant", "common cold"]
    assert reading.unread[1].said() == "'common cold' is not a diagnosis Headwatch knows"
    assert reading.to_json()["not_read"] == ["Heart transplant", "common cold"]


@pytest.mark.parametrize("row", claims_of("unknown"))
def test_every_unknown_term_is_named_and_no_valid_verdict_rests_on_it(reader, row):
    _, reading = reader.read(row["text"])
    refusal = reading.refusal(VALID)
    assert refusal is not None
    said = refusal.sentence()
    for term in row["expect"].split(";"):
        assert f"'{term}'" in said, said


@pytest.mark.parametrize("row", claims_of("misspelled"))
def test_a_near_miss_is_read_as_its_catalog_term_with_a_note(reader, row):
    _, reading = reader.read(row["text"])
    for pair in row["expect"].split(";"):
        typed, name = pair.split("=")
        term = next(t for t in reading.read if t.surface == typed)
        assert term.meaning == name
        assert any(note.startswith(f"read '{typed}' as ") for note in reading.notes())
    assert not reading.unread


@pytest.mark.parametrize(
    ("typed", "right", "note"),
    [
        ("Metformn 500 mg for diabetes, $10", "Metformin 500 mg for diabetes, $10", "read 'Metformn' as metformin"),
        (
            "Lisinoprel 10 mg for hypertension, $9000",
            "Lisinopril 10 mg for hypertension, $9000",
            "read 'Lisinoprel' as lisinopril",
        ),
        ("Sertralin 100 mg for depression", "Sertraline 100 mg for depression", "read 'Sertralin' as sertraline"),
        (
            "heart failur, furosemide 40 mg",
            "heart failure, furosemide 40 mg",  # a name of two words
            "read 'heart failur' as heart failure",
        ),
    ],
)
def test_the_issues_misspellings_read_as_the_model_reads_the_right_spelling(reader, tokenizer, typed, right, note):
    encoded, reading = reader.read(typed)
    assert [t.id for t in encoded.tokens] == tokenizer.encode_ids(right)
    assert reading.notes() == (note,)


def test_the_note_says_which_name_was_near_when_it_is_an_alias(reader):
    _, reading = reader.read("Hypertensoin, losartan 50 mg, $10")
    assert reading.notes() == ("read 'Hypertensoin' as hypertension (Essential hypertension)",)


@pytest.mark.parametrize("row", claims_of("ambiguous"))
def test_a_word_near_two_catalog_terms_is_read_as_neither(reader, row):
    encoded, reading = reader.read(row["text"])
    word = row["expect"]
    assert next(t for t in encoded.tokens if t.surface == word).text == Tokenizer.UNK
    (near,) = [u for u in reading.unread if u.surface == word]
    assert len(near.near) == 2
    assert f"'{word}' is near both {near.near[0]} and {near.near[1]}, so it was read as neither" in reading.notes()
    assert reading.refusal(VALID).parts == ("item",)


def test_a_phrase_near_a_name_is_not_read_as_it_when_one_of_its_words_is_another_word(reader):
    """'sore throat' is 2 edits from 'strep throat', but 'sore' is not a misspelling of 'strep'."""
    _, reading = reader.read("Rapid strep test for sore throat, $25")
    assert not reading.notes()
    assert [u.surface for u in reading.unread] == ["sore throat"]


@pytest.mark.parametrize("row", claims_of("language") + claims_of("noise"))
def test_a_claim_little_of_which_is_read_is_refused_with_the_share_read(reader, row):
    _, reading = reader.read(row["text"])
    assert reading.share_read < 0.5
    for outcome in (VALID, *REASONS):
        refusal = reading.refusal(outcome)
        assert refusal.parts == ("claim",)
        assert f"only {reading.words_read} of its {reading.words} words were read ({reading.share_read:.0%})" in (
            refusal.sentence()
        )


@pytest.mark.parametrize("typed", ["Type 1 diabetes", "type I diabetes", "Type 3 diabetes"])
def test_a_name_whose_number_differs_from_the_catalogs_is_not_read_as_it(reader, typed):
    """The catalog knows type 2 diabetes only; "diabetes" alone is read as it, "type 1 diabetes" must not be."""
    _, reading = reader.read(f"{typed}, metformin 500 mg, $40")
    assert not any(t.field == "diagnosis" for t in reading.read)
    assert [(u.surface, u.field) for u in reading.unread] == [(typed, "diagnosis")]
    assert reading.refusal("MEDICAL").sentence() == (
        f"Headwatch cannot judge whether the billed item fits the diagnosis: '{typed}' is not a diagnosis Headwatch "
        "knows."
    )
    assert reading.refusal("DOSAGE") is None
    for right in ("Type 2 diabetes", "type II diabetes", "diabetes"):
        _, reading = reader.read(f"{right}, metformin 500 mg, $40")
        assert [t.meaning for t in reading.read if t.field == "diagnosis"] == ["Type 2 diabetes mellitus"], right


def test_an_address_or_symbols_after_an_item_are_named_and_block_no_part(reader):
    for text, word in [
        ("Diabetes, metformin 500 mg, 🙂", "🙂"),
        ("Diabetes, metformin 500 mg, see https://x.org/a", "https://x.org/a"),
    ]:
        _, reading = reader.read(text)
        assert [u.surface for u in reading.unread] == [word] and reading.parts == (), text
    _, reading = reader.read("Metformin 500 mg, type 1 diabetes, $40")  # listed after the drug, still a diagnosis
    assert reading.parts == ("diagnosis",)


def test_a_claim_that_names_no_billed_item_is_judged_when_all_of_it_was_read(reader):
    _, reading = reader.read("Diabetes, 54 yo F, $40")
    assert reading.parts == () and reading.refusal(VALID) is None


def test_a_verdict_stands_when_the_parts_it_rests_on_were_read(reader):
    _, reading = reader.read("Metformin 500 mg for neuropathy, $10")  # the diagnosis was not read
    assert reading.parts == ("diagnosis",)
    assert reading.refusal("DOSAGE") is None and reading.refusal("COST") is None
    assert reading.refusal("MEDICAL").parts == ("diagnosis",) and reading.refusal(VALID).parts == ("diagnosis",)
    assert unchecked("ADMIN", ("diagnosis",)) == () and unchecked("ADMIN", ("diagnosis", "item")) != ()


def test_a_number_in_a_unit_not_read_blocks_the_dose_or_price(reader):
    _, reading = reader.read("Metformin 500 mg for diabetes, 300 euros")
    assert reading.parts == ("price",)
    assert "'300 euros' is in a unit Headwatch does not read" in reading.refusal("COST").sentence()
    _, reading = reader.read("Insulin glargine 20 units for diabetes, 300 euros")  # the numbers in units are not read
    assert set(reading.parts) == {"item", "price", WHOLE} and (reading.words_read, reading.words) == (2, 8)
    _, reading = reader.read("Atorvastatin 40 for high cholesterol, $12")
    assert reading.parts == ("dose",)
    assert reading.refusal("DOSAGE").sentence() == (
        "Headwatch cannot judge the dose: '40' has no unit (mg, g or mcg for a dose; $ or USD for a price)."
    )


def test_the_rules_checker_cannot_check_where_its_answer_rests_on_words_not_read(catalog, reader):
    encoded, reading = reader.read("Heart transplant for diabetes, $5")
    violations = check_claim(parse_claim(encoded), catalog)
    assert label(parse_claim(encoded), catalog) == (VALID, NO_REASON)  # blind to the transplant
    assert label_read(violations, reading.parts) == (CANNOT_CHECK, NO_REASON)
    encoded, reading = reader.read("Metformin 50 g for neuropathy, $10")
    assert label_read(check_claim(parse_claim(encoded), catalog), reading.parts) == ("INVALID", "DOSAGE")


def test_accented_words_are_not_read_as_their_first_letters(reader):
    """The tokenizer cuts 'médecin' into 'm' (a sex word) and 'édecin': read as typed, it is one unknown word."""
    encoded, reading = reader.read("Diabetes, metformin 500 mg, $40, médecin généraliste")
    assert not any(t.category == "sex" for t in encoded.tokens)
    assert [u.surface for u in reading.unread] == ["médecin généraliste"]


def test_generated_claims_read_exactly_as_the_tokenizer_reads_them(catalog, tokenizer, reader):
    """Near misses never change how a generated (training) claim reads, its filler and junk are not content, and a
    claim that names no billed item is not refused for it: nothing was written there to read."""
    for claim in generate_claims(2000, 5, catalog):
        encoded, reading = reader.read(claim.text)
        assert [t.id for t in encoded.tokens] == tokenizer.encode_ids(claim.text), claim.text
        assert not reading.unread and not reading.parts, claim.text  # none refused, those with no item included


def test_almost_no_hand_written_claim_is_refused(reader):
    """Measured: 3 of 241 are refused on their own answer, each for a part really not read (a dose in tablets, 'her
    blood pressure', 'sixty five dollars'); none is read as another term."""
    with HANDWRITTEN.open(newline="") as file:
        rows = list(csv.DictReader(file))
    refused = []
    for row in rows:
        _, reading = reader.read(row["text"], 64)
        assert not reading.notes(), row["text"]
        if reading.refusal(VALID if row["verdict"] == VALID else row["reason"]):
            refused.append(row["text"])
    assert len(refused) <= 3, refused


def test_a_prediction_gives_no_verdict_that_rests_on_words_not_read(trained_run_folder):
    from engine.interpret.inference import Predictor

    predictor = Predictor.from_run(trained_run_folder)
    p = predictor.predict("Heart transplant for a common cold, 54 yo F, $5", with_ablation=False)
    assert not p.judged and p.refusal == p.reading.refusal(p.outcome)  # whatever it answered, it rests on them
    assert p.rules == (CANNOT_CHECK, NO_REASON)  # not VALID: the rules are as blind to the transplant
    said = p.to_json()
    assert (said["verdict"], said["reason"], said["confidence"]) == (None, None, None)
    assert said["model_said"] == {"verdict": p.verdict, "reason": p.reason, "confidence": round(p.confidence, 4)}
    assert said["cannot_judge"]["said"] == p.refusal.sentence()
    assert "'Heart transplant' is not a diagnosis, drug or procedure Headwatch knows" in said["cannot_judge"]["why"]
    assert said["reading"]["not_read"] == ["Heart transplant", "common cold"]
    misspelled = predictor.predict("Metformn 500 mg for diabetes, $10", with_ablation=False)
    spelled = predictor.predict("Metformin 500 mg for diabetes, $10", with_ablation=False)
    assert misspelled.judged and misspelled.probabilities == spelled.probabilities
    assert misspelled.to_json()["reading"]["notes"] == ["read 'Metformn' as metformin"]
    assert misspelled.to_json()["cannot_judge"] is None
