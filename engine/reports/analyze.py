"""`python -m engine analyze`: every head of a saved run measured again from its weights, as its trainer
measured them while training, so the CLI and every page name the same heads the same way."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from data.generator import generate_claims
from data.rules import REASONS
from engine.interpret.attribution import RESAMPLES, reference_claims
from engine.interpret.inference import Predictor
from engine.interpret.labels import head_evidence, head_label
from engine.interpret.metrics import per_class_accuracy
from engine.interpret.pairs import run_pairs
from engine.interpret.probes import (
    FIELD_NAMES,
    FIELDS,
    FIT_CLAIMS,
    SOURCES,
    ProbeTable,
    hub_line,
    probe_table,
    probing_claims,
    read_probes,
    where_it_forms,
)
from engine.interpret.specialization import ANALYSIS_CLAIMS, specialization
from engine.runs.layout import CONFIG
from engine.runs.reading import RunError, read_config
from engine.task.claims_model import greedy_outcomes
from engine.task.dataset import (
    HELDOUT_SEED_OFFSET,
    N_CATEGORIES,
    POOL_CACHE,
    ClaimData,
    ClaimTensors,
    build_data,
    encode_claims,
)
from engine.telemetry import INTERVENTIONS, RESAMPLED, HeadSpecialization
from engine.training.config import ConfigError, TrainConfig


def _run_config(folder: Path) -> TrainConfig:
    """A saved run's settings (its data_seed: the seed its claims were generated from)."""
    try:
        config = TrainConfig.from_dict(read_config(folder))
        config.validate()
    except (ConfigError, TypeError, ValueError) as error:
        raise RunError(f"{CONFIG} is damaged: {error}") from None
    return config


def _run_data(folder: Path, config: TrainConfig, predictor: Predictor) -> ClaimData:
    return build_data(
        config.data_seed,
        config.pool_size,
        config.heldout_size,
        predictor.model.config.max_len,
        folder.parent / POOL_CACHE,
    )


def run_heldout(folder: Path, predictor: Predictor) -> tuple[ClaimTensors, str]:
    """The held-out claims the run's trainer measured its heads on, so that `analyze` names them as training did,
    and what they are. A run trained on imported claims is measured on generated ones: its file may be gone."""
    config = _run_config(folder)
    if config.claims_csv:
        claims = generate_claims(ANALYSIS_CLAIMS, config.data_seed + HELDOUT_SEED_OFFSET, predictor.catalog)
        return (
            encode_claims(claims, predictor.tokenizer, predictor.model.config.max_len),
            "generated (the run trained on imported claims)",
        )
    return _run_data(folder, config, predictor).heldout, "the run's held-out claims"


def run_probing_claims(folder: Path, predictor: Predictor) -> tuple[ClaimTensors, ClaimTensors, str]:
    """The claims the run's probes were fitted and scored on while it trained (engine.interpret.probes.probing_claims),
    and what they are; a run trained on imported claims is probed on generated ones."""
    config = _run_config(folder)
    if config.claims_csv:
        claims = generate_claims(FIT_CLAIMS, config.data_seed, predictor.catalog)
        heldout, _ = run_heldout(folder, predictor)
        return (
            encode_claims(claims, predictor.tokenizer, predictor.model.config.max_len),
            heldout,
            f"fitted on {FIT_CLAIMS:,} generated claims, scored on {len(heldout):,} others (the run trained on "
            "imported claims)",
        )
    fit, score = probing_claims(_run_data(folder, config, predictor))
    return (
        fit,
        score,
        f"fitted on the first {len(fit):,} claims of its training pool, scored on its {len(score):,} held-out claims",
    )


def analyze_run(folder: Path) -> dict:
    """`python -m engine analyze`: every head of a saved run's latest weights, measured as training measures them
    (engine.interpret.specialization.specialization on the same claims and minimal pairs), encoder heads included."""
    predictor = Predictor.from_run(folder)
    heldout, source = run_heldout(folder, predictor)
    max_len = predictor.model.config.max_len
    pairs = run_pairs(predictor.tokenizer, max_len)
    point = specialization(
        predictor.model,
        heldout,
        predictor.step or 0,
        N_CATEGORIES,
        pairs,
        reference_claims(predictor.tokenizer, max_len),
        include_encoder=True,
    )
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
        "heads": {name: [_worded(i, h) for i, h in enumerate(heads)] for name, heads in point.heads.items()},
        "specialists": sorted(head_label(h) for heads in point.heads.values() for h in heads if h.owns),
        "owners": {
            f"{name} head {i}": h.owns for name, heads in point.heads.items() for i, h in enumerate(heads) if h.owns
        },
    }


def _worded(index: int, head: HeadSpecialization) -> dict:
    """A head's facts, with its label and the evidence behind it in words (engine.interpret.labels)."""
    return asdict(head) | {"head": index, "label": head_label(head), "evidence": head_evidence(head)}


def probe_report(folder: Path) -> list[str]:
    """`python -m engine analyze --probes`: where each reason's verdict forms in the run's latest weights, as a
    table (the encoder's output at each field, beside the word's embedding alone) and one plain line per reason."""
    predictor = Predictor.from_run(folder)
    fit, score, source = run_probing_claims(folder, predictor)
    table = probe_table(predictor.model, fit, score, predictor.step or 0)
    try:
        recorded = [t.step for t in read_probes(folder)]
        while_training = (
            f"Recorded while training at steps {', '.join(f'{s:,}' for s in recorded)}."
            if recorded
            else "None was recorded while training: the run was trained before runs recorded them."
        )
    except RunError as error:
        while_training = f"What was recorded while training is not read: {error}."
    return [
        f"Where the verdict forms at step {table.step:,}: can a linear probe tell each reason's claims from valid ones",
        f"at one field? Held-out balanced accuracy (0.50 is a guess) on the {SOURCES[0]}'s output there / on the "
        f"word's {SOURCES[1]} alone; '-': too few claims to measure. Probes {source}.",
        "",
        *probe_rows(table),
        "",
        *(where_it_forms(table, reason) for reason in REASONS),
        hub_line(table),
        while_training,
    ]


def probe_rows(table: ProbeTable) -> list[str]:
    """The table as aligned text, a row per reason and a column per field."""
    width = max(11, *(len(name) for name in FIELD_NAMES.values()))

    def cell(reason: str, field: str) -> str:
        values = [table.cell(source, reason, field) for source in SOURCES]
        return "-" if any(v != v for v in values) else "/".join(f"{v:.2f}" for v in values)

    header = f"{'':8}" + "".join(f"{FIELD_NAMES[f]:>{width + 1}}" for f in FIELDS)
    return [header, *(f"{reason:8}" + "".join(f"{cell(reason, f):>{width + 1}}" for f in FIELDS) for reason in REASONS)]
