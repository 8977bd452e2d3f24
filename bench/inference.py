"""One pasted claim to verdict + every head's heatmap + per-head ablation: median milliseconds, for generated claims
and for the hand-written ones (whose unknown words, near misses and chatter the reading report goes through), for the
hand-written claims of unknown terms, misspellings, other languages and noise (tests/data/unread_claims.csv), and for
hand-written claims of two to four service lines (each line judged, the heatmaps and ablation of its first), and the
reader alone on all of them (its share of an answer). Then a
claims file scored claim by claim against in batches (Predictor.predict_many), and `python -m engine predict`'s
stdin answered one claim at a time (the baseline) against in batches (engine.interpret.claim_lines.answer_lines):
claims per second, 3 interleaved repeats each.

Run: .venv/bin/python -m bench.inference  (untrained weights cost the same time as trained ones)
"""

from __future__ import annotations

import csv
import io
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import torch

from data.catalog import load_catalog
from data.generator import generate_claims
from data.tokenizer import Tokenizer
from engine.interpret.claim_lines import answer_lines
from engine.interpret.inference import Predictor
from engine.task.claims_model import ClaimsTransformer, sized_for_claims
from engine.training.presets import preset

HANDWRITTEN = Path(__file__).resolve().parents[1] / "data" / "handwritten_claims.csv"
SERVICE_LINES = Path(__file__).resolve().parents[1] / "tests" / "data" / "service_lines.csv"
UNREAD_CLAIMS = Path(__file__).resolve().parents[1] / "tests" / "data" / "unread_claims.csv"


def main() -> None:
    torch.set_num_threads(1)
    catalog = load_catalog()
    tokenizer = Tokenizer.from_catalog(catalog)
    config = sized_for_claims(preset("default").model, tokenizer)
    predictor = Predictor(ClaimsTransformer(config), tokenizer, step=0, catalog=catalog)
    claims = [c.text for c in generate_claims(300, seed=7, catalog=catalog)]
    for text in claims[:20]:
        predictor.predict(text)
    with HANDWRITTEN.open(newline="") as file:
        handwritten = [row["text"] for row in csv.DictReader(file)]
    with SERVICE_LINES.open(newline="", encoding="utf-8") as file:
        several = [row["text"] for row in csv.DictReader(file)]
    with UNREAD_CLAIMS.open(newline="", encoding="utf-8") as file:
        unread = [row["text"] for row in csv.DictReader(file)]
    rows = {}
    for label, ablation, texts in (
        ("verdict + heatmaps", False, claims),
        ("verdict + heatmaps + ablation", True, claims),
        ("hand-written, verdict + heatmaps", False, handwritten),
        ("unread terms, verdict + heatmaps", False, unread),
        ("2-4 lines, verdict + heatmaps", False, several),
        ("2-4 lines, verdict + ablation", True, several),
    ):
        times = []
        for text in texts:
            started = time.perf_counter()
            predictor.predict(text, with_ablation=ablation)
            times.append((time.perf_counter() - started) * 1000)
        rows[label] = times
    rows["reading alone (Reader.read), all above"] = _read_times(predictor, [*claims, *handwritten, *unread, *several])
    baseline = statistics.median(rows["verdict + heatmaps"])
    print(f"{'what':<38} | {'median ms':>9} | {'p90 ms':>7} | ratio")
    for label, times in rows.items():
        p90 = statistics.quantiles(times, n=10)[-1]
        median = statistics.median(times)
        print(f"{label:<38} | {median:>9.2f} | {p90:>7.2f} | x{median / baseline:.2f}")
    file_claims = [c.text for c in generate_claims(2000, seed=8, catalog=catalog)]
    _print_rates(
        "scoring 2,000 claims",
        len(file_claims),
        {
            "claim by claim": lambda: [predictor.predict(t, with_ablation=False) for t in file_claims],
            "batched": lambda: predictor.predict_many(file_claims),
        },
    )
    stdin = "".join(text.replace("\n", ", ") + "\n" for text in file_claims).encode()
    with open(os.devnull, "w") as out:
        _print_rates(
            "engine predict, 2,000 lines",
            len(file_claims),
            {
                "one claim at a time (as before)": lambda: _one_at_a_time(predictor, io.BytesIO(stdin), out),
                "batched": lambda: answer_lines(predictor, io.BytesIO(stdin), out),
            },
        )


def _read_times(predictor: Predictor, texts: list[str]) -> list[float]:
    """Milliseconds of the reader alone on each claim: its share of a pasted claim's answer."""
    times = []
    for text in texts:
        started = time.perf_counter()
        predictor.reader.read(text, predictor.model.config.max_len)
        times.append((time.perf_counter() - started) * 1000)
    return times


def _one_at_a_time(predictor: Predictor, stream: io.BytesIO, out: TextIO) -> None:
    """`python -m engine predict` without batches, the baseline answer_lines is measured against: a claim judged,
    written and flushed a line at a time."""
    for line in stream:
        text = line.decode("utf-8", errors="replace").rstrip("\r\n")
        out.write(json.dumps(predictor.predict(text, with_ablation=False).to_json()) + "\n")
        out.flush()


def _print_rates(what: str, claims: int, ways: dict[str, Callable[[], object]]) -> None:
    """Claims per second of each way, median of 3 interleaved repeats, and its ratio to the first."""
    rates: dict[str, list[float]] = {label: [] for label in ways}
    for _ in range(3):
        for label, score in ways.items():
            started = time.perf_counter()
            score()
            rates[label].append(claims / (time.perf_counter() - started))
    baseline = statistics.median(next(iter(rates.values())))
    print(f"\n{what:<32} | {'claims/s':>9} | ratio")
    for label, values in rates.items():
        print(f"{label:<32} | {statistics.median(values):>9.0f} | x{statistics.median(values) / baseline:.2f}")


if __name__ == "__main__":
    main()
