"""One pasted claim to verdict + every head's heatmap + per-head ablation: median milliseconds.

Run: .venv/bin/python -m bench.inference  (untrained weights cost the same time as trained ones)
"""

from __future__ import annotations

import statistics
import time

import torch

from data.catalog import load_catalog
from data.generator import generate_claims
from data.tokenizer import Tokenizer
from engine.dataset import N_CATEGORIES
from engine.inference import Predictor
from engine.model import ClaimsTransformer, ModelConfig
from engine.presets import preset


def main() -> None:
    torch.set_num_threads(1)
    catalog = load_catalog()
    tokenizer = Tokenizer.from_catalog(catalog)
    config = preset("default").model
    config = ModelConfig(**{**config.to_dict(), "vocab_size": len(tokenizer.vocab), "n_categories": N_CATEGORIES})
    predictor = Predictor(ClaimsTransformer(config), tokenizer, step=0, catalog=catalog)
    claims = [c.text for c in generate_claims(300, seed=7, catalog=catalog)]
    for text in claims[:20]:
        predictor.predict(text)
    rows = {}
    for label, ablation in (("verdict + heatmaps", False), ("verdict + heatmaps + ablation", True)):
        times = []
        for text in claims:
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


if __name__ == "__main__":
    main()
