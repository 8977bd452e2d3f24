"""A user's claims file scored by a model: per claim the answer or why there is none, what was read and what was
not, the rules checker's answer and the expected label, as the results CSV people download."""

from __future__ import annotations

from collections.abc import Callable

from data.vocabulary import Encoded
from engine.interpret.inference import Predictor
from engine.interpret.prediction import Prediction
from engine.runs.exports import csv_bytes
from engine.task.claims_csv import ImportedClaims

# verdict, reason and confidence are the answer, blank when the claim cannot be judged (cannot_judge says why);
# model_* are the model's own answer and probability, given either way.
SCORED_COLUMNS = (
    "text",
    "verdict",
    "reason",
    "confidence",
    "cannot_judge",
    "model_verdict",
    "model_reason",
    "model_confidence",
    "lines",
    "read",
    "not_read",
    "notes",
    "error",
    "rules_verdict",
    "rules_reason",
    "expected_verdict",
    "expected_reason",
    "agrees",
)


def _rules(predictor: Predictor, prediction: Prediction) -> tuple[str, str]:
    """What the rules checker says on the fields read (CANNOT CHECK where a part was not read); blank when it
    cannot tell."""
    if prediction.error or prediction.reading is None:
        return "", ""
    if prediction.lines:  # the claim's rules are its lines', each checked on its own
        return prediction.rules or ("", "")
    rules, _ = predictor.rules(
        Encoded(prediction.tokens, prediction.truncated, prediction.warnings), prediction.reading
    )
    return rules or ("", "")


def lines_cell(prediction: Prediction) -> str:
    """Each service line of a claim of several billed items, with its answer: '1. lisinopril 10 mg: VALID (99%);
    2. ...', and why no line is judged on a price, if so; blank for a claim of one item."""
    lines = [
        f"{number}. {line.text}: "
        + (
            f"cannot judge ({line.refusal.sentence()})"
            if line.refusal
            else f"{line.verdict if line.verdict == 'VALID' else line.reason} ({line.confidence:.0%})"
        )
        for number, line in enumerate(prediction.lines, 1)
    ]
    return "; ".join([*lines, *([prediction.lines_note] if prediction.lines_note else [])])


def _reading_cells(prediction: Prediction) -> list[str]:
    """read, not_read and notes: 'Metformn = drug Metformin; 500 mg = dose 500 mg', 'common cold; ...', '...'."""
    reading = prediction.reading
    if reading is None:
        return ["", "", ""]
    return [
        "; ".join(f"{t.surface} = {t.field} {t.meaning}" for t in reading.read),
        "; ".join(u.surface for u in reading.unread),
        "; ".join(reading.notes()),
    ]


def scored_rows(
    predictor: Predictor, claims: ImportedClaims, progress: Callable[[int], None] | None = None
) -> list[list[str]]:
    """Per claim (SCORED_COLUMNS): the answer, or why there is none, the model's own answer, what was read and
    what was not, the rules checker's answer, and any expected label; `progress` hears how many claims are scored
    so far."""
    predictions = predictor.predict_many(claims.texts, progress)
    rows = []
    for p, verdict, reason in zip(predictions, claims.verdicts, claims.reasons, strict=True):
        agrees = ""
        if verdict and p.judged:
            agrees = str(p.verdict == verdict and (verdict == "VALID" or p.reason == reason))
        model = [p.verdict or "", p.reason or "", f"{p.confidence:.4f}" if p.confidence is not None else ""]
        rows.append(
            [
                p.text,
                *(model if p.judged else ["", "", ""]),
                p.refusal.sentence() if p.refusal else "",
                *model,
                lines_cell(p),
                *_reading_cells(p),
                p.error or "",
                *_rules(predictor, p),
                verdict or "",
                reason or "",
                agrees,
            ]
        )
    return rows


def scored_csv(rows: list[list[str]]) -> bytes:
    """`scored_rows` as the results CSV people download."""
    return csv_bytes(SCORED_COLUMNS, rows)
