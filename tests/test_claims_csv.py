"""Claims CSV import: every malformed file gets a message naming the problem; good files score and train."""

import csv
import io
import time
from pathlib import Path

import pytest

from engine.interpret.scored_csv import SCORED_COLUMNS, scored_csv, scored_rows
from engine.task.claims_csv import CsvProblem, read_claims_csv
from engine.telemetry import TelemetryHub
from engine.training.presets import preset
from engine.training.trainer import Trainer


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "is empty"),
        (b"   \n", "is empty"),
        (b"text,verdict\n", "header but no claims"),
        (b"claim,amount\nfoo,1\n", "no 'text' column"),
        (b"text,verdict\n\xff\xfe bad bytes,VALID\n", "not UTF-8"),
        (b"text,verdict\ndiabetes metformin,MAYBE\n", "Line 2: verdict must be VALID or INVALID"),
        (b"text,verdict,reason\ndiabetes metformin,INVALID,\n", "needs a reason"),
        (b"x" * (6 * 2**20), "the limit is 5 MB"),
    ],
)
def test_malformed_files_are_refused_with_their_problem(data: bytes, words: str) -> None:
    with pytest.raises(CsvProblem, match=words):
        read_claims_csv(data)


def test_a_million_rows_is_refused_without_reading_them_all(monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.task.claims_csv

    read: list[int] = []
    real = engine.task.claims_csv._named
    monkeypatch.setattr(
        engine.task.claims_csv,
        "_named",
        lambda values, columns, number: read.append(number) or real(values, columns, number),
    )
    with pytest.raises(CsvProblem, match="more than 50,000 claims"):
        read_claims_csv(b"text\n" + b"a\n" * 1_000_000)
    assert len(read) == 50_000  # it stops at the limit instead of labelling every row


def test_semicolon_delimiter_and_labels_are_understood() -> None:
    claims = read_claims_csv(
        b'text;Verdict;reason\n"Diabetes; metformin 500 mg";valid;\n;VALID;\nchemo for diabetes;INVALID;medical\n'
    )
    assert claims.texts == ("Diabetes; metformin 500 mg", "chemo for diabetes")
    assert claims.verdicts == ("VALID", "INVALID") and claims.reasons == (None, "MEDICAL")
    assert claims.skipped_blank == 1


def test_scoring_and_training_on_a_claims_file(tmp_path: Path) -> None:
    from data.generator import generate_claims

    rows = [{"text": c.text, "verdict": c.verdict, "reason": c.reason} for c in generate_claims(300, seed=5)]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["text", "verdict", "reason"])
    writer.writeheader()
    writer.writerows(rows)
    path = tmp_path / "claims.csv"
    path.write_text(buffer.getvalue())
    hub = TelemetryHub()
    trainer = Trainer(hub)
    config = preset("quick")
    config.claims_csv = str(path)
    trainer.start(config, folder=tmp_path / "run", run_id="run")
    while trainer.active:
        time.sleep(0.05)
    assert hub.snapshot().status == "finished", hub.snapshot().message
    from engine.interpret.inference import Predictor

    predictor = Predictor.from_run(tmp_path / "run")
    results = list(
        csv.DictReader(io.StringIO(scored_csv(scored_rows(predictor, read_claims_csv(path.read_bytes()))).decode()))
    )
    assert len(results) == 300
    assert not any(r["cannot_judge"] for r in results)  # every word of a generated claim is read, none refused
    assert {r["verdict"] for r in results} <= {"VALID", "INVALID"}
    assert all(r["agrees"] in ("True", "False") for r in results)
    assert {r["rules_verdict"] for r in results} <= {"VALID", "INVALID", "CANNOT CHECK", ""}
    assert any(r["rules_verdict"] for r in results)


def test_scored_claims_say_what_was_read_and_what_could_not_be_judged(trained_run_folder: Path) -> None:
    from engine.interpret.inference import Predictor

    predictor = Predictor.from_run(trained_run_folder)
    claims = read_claims_csv(
        b'text\n"Heart transplant for a common cold, 54 yo F, $5"\n"Metformn 500 mg for diabetes, $10"\n'
    )
    unread, misspelled = (dict(zip(SCORED_COLUMNS, row, strict=True)) for row in scored_rows(predictor, claims))
    assert (unread["verdict"], unread["reason"], unread["confidence"]) == ("", "", "")
    assert unread["model_verdict"] in ("VALID", "INVALID") and float(unread["model_confidence"]) > 0
    assert "'Heart transplant' is not a diagnosis, drug or procedure Headwatch knows" in unread["cannot_judge"]
    assert unread["not_read"] == "Heart transplant; common cold"
    assert (unread["rules_verdict"], unread["agrees"]) == ("CANNOT CHECK", "")
    assert misspelled["notes"] == "read 'Metformn' as metformin" and misspelled["cannot_judge"] == ""
    assert misspelled["read"].startswith("Metformn = drug Metformin; 500 mg = dose 500 mg")
    assert misspelled["verdict"] == misspelled["model_verdict"] != ""


def test_batched_scoring_gives_each_claim_the_verdict_it_gets_alone(trained_run_folder: Path) -> None:
    from data.generator import generate_claims
    from engine.interpret.inference import Predictor

    predictor = Predictor.from_run(trained_run_folder)
    texts = [c.text for c in generate_claims(40, seed=11)]
    texts[3], texts[17], texts[30] = "", "qwerty zxcvb", "x" * 6000  # refused claims between judged ones
    done: list[int] = []
    batched = predictor.predict_many(texts, progress=done.append, batch_size=16)
    assert done == [16, 32, 40]
    for text, many in zip(texts, batched, strict=True):
        alone = predictor.predict(text, with_ablation=False)
        assert many.text == text and many.error == alone.error
        assert (many.verdict, many.reason) == (alone.verdict, alone.reason)
        for outcome, probability in alone.probabilities.items():
            assert abs(many.probabilities[outcome] - probability) < 1e-4
    assert sum(p.error is None for p in batched) == 37


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"text,verdict\nDiabetes, metformin 500 mg, $40,VALID\n", "Line 2 has more values"),
        (
            b'text\n"Diabetes, metformin 500 mg\nAsthma, montelukast 10 mg\n',
            "line 2: a quote opened here is never closed",
        ),
        (b'text\nok claim\n"' + b"x" * 200_000 + b'"\n', "line 3: a value is longer than 131,072 characters"),
    ],
)
def test_malformed_csv_names_the_line(data: bytes, problem: str) -> None:
    with pytest.raises(CsvProblem, match=problem):
        read_claims_csv(data)


def test_a_row_cap_and_a_byte_cap(tmp_path) -> None:
    from engine.task.claims_csv import read_claims_file

    with pytest.raises(CsvProblem, match="more than 2 claims"):
        read_claims_csv(b"text\na\nb\nc\n", max_rows=2)
    big = tmp_path / "big.csv"
    big.write_bytes(b"text\n" + b"Diabetes, metformin\n" * 100_000)
    with pytest.raises(CsvProblem, match=r"big.csv is 1.9 MB; the limit is 1 MB"):
        read_claims_file(big, max_bytes=2**20)


def test_a_quoted_word_followed_by_more_text_is_read_as_a_spreadsheet_reads_it() -> None:
    claims = read_claims_csv(b'text\n"Asthma" montelukast 10 mg $30\nGout; colchicine 0.6 mg\n')
    assert claims.texts == ("Asthma montelukast 10 mg $30", "Gout; colchicine 0.6 mg")
    assert claims.lines == (2, 3)
