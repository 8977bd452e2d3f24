"""`python -m engine analyze`: every head of a saved run measured again from its weights, as its trainer
measured them while training, so the CLI and every page name the same heads the same way."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from data.generator import generate_claims
from engine.analysis import ANALYSIS_CLAIMS, specialization
from engine.attribution import RESAMPLES, reference_claims, run_pairs
from engine.dataset import HELDOUT_SEED_OFFSET, N_CATEGORIES, POOL_CACHE, ClaimTensors, build_data, encode_claims
from engine.inference import Predictor
from engine.metrics import per_class_accuracy
from engine.model import greedy_outcomes
from engine.run_files import CONFIG, RunError, read_config
from engine.telemetry import INTERVENTIONS, RESAMPLED
from engine.training.config import ConfigError, TrainConfig


def run_heldout(folder: Path, predictor: Predictor) -> tuple[ClaimTensors, str]:
    """The held-out claims the run's trainer measured its heads on, so that `analyze` names them as training did,
    and what they are. A run trained on imported claims is measured on generated ones: its file may be gone."""
    raw = read_config(folder)
    try:
        config = TrainConfig.from_dict(raw)
        config.validate()
    except (ConfigError, TypeError, ValueError) as error:
        raise RunError(f"{CONFIG} is damaged: {error}") from None
    data_seed = raw.get("data_seed", config.seed)  # runs saved before data_seed existed drew claims from their seed
    max_len = predictor.model.config.max_len
    if config.claims_csv:
        claims = generate_claims(ANALYSIS_CLAIMS, data_seed + HELDOUT_SEED_OFFSET, predictor.catalog)
        return encode_claims(claims, predictor.tokenizer, max_len), "generated (the run trained on imported claims)"
    data = build_data(data_seed, config.pool_size, config.heldout_size, max_len, folder.parent / POOL_CACHE)
    return data.heldout, "the run's held-out claims"


def analyze_run(folder: Path) -> dict:
    """`python -m engine analyze`: every head of a saved run's latest weights, measured as training measures them
    (engine.analysis.specialization on the same claims and minimal pairs), encoder heads included."""
    predictor = Predictor.from_run(folder)
    heldout, source = run_heldout(folder, predictor)
    max_len = predictor.model.config.max_len
    pairs = run_pairs(predictor.tokenizer, max_len)
    point = specialization(predictor.model, heldout, predictor.step or 0, N_CATEGORIES, pairs,
                           reference_claims(predictor.tokenizer, max_len), include_encoder=True)
    claims = heldout.subset(slice(0, ANALYSIS_CLAIMS))
    with torch.no_grad():
        predicted = greedy_outcomes(predictor.model.class_log_probs(claims.tokens, claims.categories))
    _, accuracy_by_class = per_class_accuracy(predicted, claims.classes)
    return {
        "run": str(folder),
        "step": predictor.step,
        "claims": len(claims),
        "claims_source": source,
        "minimal_pairs": len(pairs.checks),
        "interventions": {
            "necessity": "each cross-attention head in turn sees what it saw on the claim's repaired twin (activation "
                         "patching on minimal pairs): the share of the check's evidence that goes",
            "ablation": f"each head in turn {INTERVENTIONS[RESAMPLED]}: its output on {RESAMPLES} fixed generated "
                        "claims of the claim's class, one at a time, the probabilities averaged (resample ablation); "
                        "an encoder head's at the words of the same field: the accuracy lost per class",
            "pairs": "pair_necessity and pair_ablation: the same, with the head and one other taken away together",
        },
        "heldout_per_class": accuracy_by_class,
        "heads": {name: [asdict(h) | {"head": i} for i, h in enumerate(heads)] for name, heads in point.heads.items()},
        "specialists": sorted(h.label for heads in point.heads.values() for h in heads if h.owns),
        "owners": {f"{name} head {i}": h.owns for name, heads in point.heads.items() for i, h in enumerate(heads)
                   if h.owns},
    }
