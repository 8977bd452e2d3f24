"""One pasted claim to verdict + every head's heatmap + per-head ablation: median milliseconds, for generated claims
and for the hand-written ones (whose unknown words, near misses and chatter the reading report goes through). Then a
claims file scored claim by claim against in batches (Predictor.predict_many): claims per second, 3 interleaved
repeats.

Run: .venv/bin/python -m bench.inference  (untrained weights cost the same time as trained ones)
"""

from __future__ import annotations

import csv
import statistics
import time
from pathlib import Path

import torch

from data.catalog import load_catalog
from data.generator import generate_claims
from data.tokenizer import Tokenizer
from engine.inference import Predictor
from engine.model import ClaimsTransformer
from engine.training.presets import preset

HANDWRITTEN = Path(__file__).resolve().parents[1] / "data" / "handwritten_claims.csv"


def main() -> None:
    torch.set_num_threads(1)
    catalog = load_catalog()
    tokenizer = Tokenizer.from_catalog(catalog)
    config = preset("default").model.sized_for(len(tokenizer.vocab))
    predictor = Predictor(ClaimsTransformer(config), tokenizer, step=0, catalog=catalog)
    claims = [c.text for c in generate_claims(300, seed=7, catalog=catalog)]
    for text in claims[:20]:
        predictor.predict(text)
    with HANDWRITTEN.open(newline="") as file:
        handwritten = [row["text"] for row in csv.DictReader(file)]
    rows = {}
    for label, ablation, texts in (("verdict + heatmaps", False, claims),
                                   ("verdict + heatmaps + ablation", True, claims),
                                   ("hand-written, verdict + heatmaps", False, handwritten)):
        times = []
        for text in texts:
            started = time.perf_counter()
            predictor.predict(text, with_ablation=ablation)
            times.append((time.perf_counter() - started) * 1000)
        rows[label] = times
    baseline = statistics.median(rows["verdict + heatmaps"])
    print(f"{'what':<32} | {'median ms':>9} | {'p90 ms':>7} | ratio")
    for label, times in rows.items():
        p90 = statistics.quantiles(times, n=10)[-1]
        median = statistics.median(times)
        print(f"{label:<32} | {median:>9.2f} | {p90:>7.2f} | x{median / baseline:.2f}")
    file_claims = [c.text for c in generate_claims(2000, seed=8, catalog=catalog)]
    rates: dict[str, list[float]] = {"claim by claim": [], "batched": []}
    for _ in range(3):
        for label, score in (("claim by claim", lambda: [predictor.predict(t, with_ablation=False)
                                                         for t in file_claims]),
                             ("batched", lambda: predictor.predict_many(file_claims))):
            started = time.perf_counter()
            score()
            rates[label].append(len(file_claims) / (time.perf_counter() - started))
    print(f"\n{'scoring 2,000 claims':<32} | {'claims/s':>9} | ratio")
    for label, values in rates.items():
        print(f"{label:<32} | {statistics.median(values):>9.0f} | "
              f"x{statistics.median(values) / statistics.median(rates['claim by claim']):.2f}")


if __name__ == "__main__":
    main()
