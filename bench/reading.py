"""Does a verdict know what it did not read? Issue 30's targets, measured with a trained run on the hand-written
claims it never trained on (tests/data/unread_claims.csv and tests/data/service_lines.csv): unknown terms named,
no confident VALID resting on an unread diagnosis or item, misspellings read right, service lines right per line,
and claims refused for reading too little. Trains nothing. Prints a table and PASS/MISS per target; exits 0.

Run: .venv/bin/python -m bench.reading --run RUN   (a trained run's folder, e.g. runs/<id> or a study's seed-0)
"""

from __future__ import annotations

import argparse
import sys
from itertools import zip_longest
from pathlib import Path

from data.rules import VALID, WHOLE
from engine.interpret.inference import Predictor
from engine.interpret.prediction import Prediction
from tests.test_lines import SERVICE_LINES, said
from tests.test_reading import UNREAD_CLAIMS

CONFIDENT = 0.90


def named(p: Prediction, term: str) -> bool:
    """The term is among the words not read, or quoted in what the answer says it could not judge or noted."""
    reading = p.reading
    said_text = " ".join(
        [*(u.said() for u in reading.unread), *reading.notes(), *([p.refusal.sentence()] if p.refusal else [])]
    )
    return any(u.surface == term for u in reading.unread) or f"'{term}'" in said_text


def read_right(p: Prediction, typed: str, name: str) -> bool:
    return any(t.surface == typed and t.meaning == name for t in p.reading.read)


def share(rows: list[tuple]) -> float:
    """The share of rows whose last item (the check) holds."""
    return sum(row[-1] for row in rows) / len(rows)


def rests_on_unread(p: Prediction) -> bool:
    return bool({"diagnosis", "item", WHOLE} & set(p.reading.parts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a trained run folder")
    run = parser.parse_args().run
    if not (run / "config.json").is_file():
        sys.exit(f"No trained run at {run}: pass --run PATH (a run folder with config.json and checkpoints).")
    print(f"run: {run}")
    predictor = Predictor.from_run(run)
    texts = [row["text"] for row in UNREAD_CLAIMS + SERVICE_LINES]
    predictions = dict(zip(texts, predictor.predict_many(texts), strict=True))
    unread = [(row, predictions[row["text"]]) for row in UNREAD_CLAIMS]
    lines = [(row, predictions[row["text"]]) for row in SERVICE_LINES]

    terms = [
        (row["text"], term, named(p, term))
        for row, p in unread
        if row["kind"] in ("unknown", "ambiguous")
        for term in row["expect"].split(";")
    ]
    spelled = [
        (row["text"], pair, read_right(p, *pair.split("=")))
        for row, p in unread
        if row["kind"] == "misspelled"
        for pair in row["expect"].split(";")
    ]
    confident = [
        text
        for text, p in predictions.items()
        if rests_on_unread(p) and p.judged and p.verdict == VALID and p.confidence >= CONFIDENT
    ]
    per_line = [
        (row["text"], n, want, got)
        for row, p in lines
        for n, (want, got) in enumerate(
            zip_longest(row["line_outcomes"].split(), [said(line) for line in p.lines], fillvalue="(no line)"), 1
        )
    ]
    expect_refused = {row["text"] for row in UNREAD_CLAIMS if row["kind"] in ("language", "noise")}
    refused = {text for text, p in predictions.items() if p.reading.too_little_read}

    lines_share = sum(want == got for *_, want, got in per_line) / len(per_line)
    print(
        f"claims: {len(texts)} hand-written ({len(UNREAD_CLAIMS)} unread_claims.csv, "
        f"{len(SERVICE_LINES)} service_lines.csv)\n"
    )
    print(f"{'target':<52} {'measured':>16} {'goal':>8}  result")
    rows = [
        (
            "(a) unknown terms named in the answer",
            f"{sum(ok for *_, ok in terms)}/{len(terms)}",
            "all",
            share(terms) == 1,
        ),
        (f"(b) VALID >= {CONFIDENT:.0%} on an unread diagnosis/item", f"{len(confident)}", "0", not confident),
        (
            "(c) misspellings read right",
            f"{sum(ok for *_, ok in spelled)}/{len(spelled)} {share(spelled):.0%}",
            ">= 90%",
            share(spelled) >= 0.90,
        ),
        (
            "(d) service lines right per line",
            f"{sum(w == g for *_, w, g in per_line)}/{len(per_line)} {lines_share:.1%}",
            ">= 95%",
            lines_share >= 0.95,
        ),
    ]
    for name, measured, goal, ok in rows:
        print(f"{name:<52} {measured:>16} {goal:>8}  {'PASS' if ok else 'MISS'}")
    print(
        f"(e) refused for reading too little: {len(refused & expect_refused)}/{len(expect_refused)} of the other "
        f"languages and noise; {len(refused - expect_refused)} of the other {len(texts) - len(expect_refused)}"
    )

    misses = (
        [f"(a) not named: '{term}' in {text!r}" for text, term, ok in terms if not ok]
        + [f"(b) VALID {predictions[t].confidence:.0%}: {t!r}" for t in confident]
        + [f"(c) not read as expected: {pair} in {text!r}" for text, pair, ok in spelled if not ok]
        + [f"(d) line {n} {got}, expected {want}: {text!r}" for text, n, want, got in per_line if want != got]
        + [
            f"(e) not refused: {t!r} (share read {predictions[t].reading.share_read:.0%})"
            for t in sorted(expect_refused - refused)
        ]
        + [f"(e) refused: {t!r}" for t in sorted(refused - expect_refused)]
    )
    if misses:
        print("\nmisses:\n" + "\n".join(misses))


if __name__ == "__main__":
    main()
