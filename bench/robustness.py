"""Does the verdict depend on the wording? Train the preset for several seeds, then judge the same held-out claims
in the generator's wording and rewritten from their fields in plain styles (data/styles.py), and the hand-written
claims (data/handwritten_claims.csv). Per seed: exact-match accuracy per style, the share of claims whose answer
changes with the wording alone, expected calibration error on the rewritten styles, and answers above 99%
confidence that the rules checker contradicts (every hand-written claim answered wrongly is named); and how many
of the app's example claims it judges as the rules do.

Run: .venv/bin/python -m bench.robustness [--preset default] [--seeds 0 1 2 3 4] [--claims 600] [--set NAME=VALUE]
"""

from __future__ import annotations

import argparse
import random
import time
from dataclasses import replace
from pathlib import Path

from data.catalog import Catalog, load_catalog
from data.generator import generate_claims
from data.rules import label
from data.styles import STYLES
from data.tokenizer import Tokenizer
from data.vocabulary import parse_claim
from engine.claims_csv import read_claims_file
from engine.dataset import EXAMPLE_CLAIMS, HELDOUT_SEED_OFFSET
from engine.inference import Predictor, verdict_to_outcome
from engine.metrics import expected_calibration_error
from engine.telemetry import TelemetryHub
from engine.training.config import TrainConfig
from engine.training.presets import preset
from engine.training.trainer import Trainer

HANDWRITTEN = Path(__file__).resolve().parents[1] / "data" / "handwritten_claims.csv"
GENERATOR = "generator's wording"


def recipe(preset_name: str, settings: list[str]) -> TrainConfig:
    """The preset with `name=value` settings changed (a lever to measure), each value of the setting's own type."""
    config = preset(preset_name)
    for setting in settings:
        name, _, value = setting.partition("=")
        target = config.model if hasattr(config.model, name) else config
        if not hasattr(target, name):
            raise SystemExit(f"no setting called {name!r}")
        kind = type(getattr(target, name))
        setattr(target, name, value.lower() == "true" if kind is bool else kind(value))
    return config


def train(config: TrainConfig, seed: int) -> Predictor:
    trainer = Trainer(TelemetryHub())
    config = replace(config, seed=seed, model=replace(config.model))
    trainer.start(config)
    while trainer.active:
        time.sleep(0.5)
    if trainer.hub.snapshot().status != "finished":
        raise SystemExit(f"seed {seed}: {trainer.hub.snapshot().message}")
    return trainer.live_model().predictor()


def worded(claims: list, catalog: Catalog, tokenizer: Tokenizer) -> tuple[dict[str, list[str]], list[str]]:
    """{style: texts} for the claims whose every rewrite the tokenizer reads as the same fields, and their answers."""
    rng = random.Random(0)
    kept, texts = [], {GENERATOR: [], **{name: [] for name in STYLES}}
    for claim in claims:
        rewrites = {name: style(claim.fields, catalog, rng) for name, style in STYLES.items()}
        if all(parse_claim(tokenizer.encode(t)) == claim.fields for t in rewrites.values()):
            kept.append(verdict_to_outcome(claim.verdict, claim.reason))
            for name, text in {GENERATOR: claim.text, **rewrites}.items():
                texts[name].append(text)
    return texts, kept


def measure(predictor: Predictor, texts: dict[str, list[str]], truth: list[str]) -> dict[str, float]:
    outcomes, confident, correct = {}, [], []
    for name, batch in texts.items():
        predictions = predictor.predict_many(batch)
        outcomes[name] = [p.outcome for p in predictions]
        if name != GENERATOR:
            confident += [p.confidence or 0.0 for p in predictions]
            correct += [p.outcome == t for p, t in zip(predictions, truth, strict=True)]
    row = {name: sum(o == t for o, t in zip(got, truth, strict=True)) / len(truth) for name, got in outcomes.items()}
    answers = list(zip(*outcomes.values(), strict=True))
    row["flip rate"] = sum(len(set(a)) > 1 for a in answers) / len(answers)
    row["ECE"] = expected_calibration_error(confident, correct)
    return row


def handwritten(predictor: Predictor) -> tuple[float, list[tuple[str, float]]]:
    """Exact-match accuracy on the hand-written claims, and each claim answered otherwise than the rules, in words,
    with the model's confidence."""
    claims = read_claims_file(HANDWRITTEN)
    predictions = predictor.predict_many(claims.texts)
    truth = [verdict_to_outcome(v, r) for v, r in zip(claims.verdicts, claims.reasons, strict=True)]
    accuracy = sum(p.outcome == t for p, t in zip(predictions, truth, strict=True)) / len(truth)
    wrong = [(f"{text!r}: {p.outcome} at {p.confidence:.2%}, the rules say {t}", p.confidence or 0.0)
             for text, p, t in zip(claims.texts, predictions, truth, strict=True) if p.outcome != t]
    return accuracy, wrong


def examples_missed(predictor: Predictor, catalog: Catalog, tokenizer: Tokenizer) -> list[str]:
    """The app's example claims the model does not judge as the rules checker does, with its answer."""
    missed = []
    for text, prediction in zip(EXAMPLE_CLAIMS, predictor.predict_many(list(EXAMPLE_CLAIMS)), strict=True):
        if prediction.outcome != verdict_to_outcome(*label(parse_claim(tokenizer.encode(text)), catalog)):
            missed.append(f"{text!r}: {prediction.outcome} at {prediction.confidence:.0%}")
    return missed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="default")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--claims", type=int, default=600, help="held-out claims rewritten in every style")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="change one setting of the preset (its own or its model's), e.g. --set pool_size=120000")
    args = parser.parse_args()
    config = recipe(args.preset, args.set)
    print(f"preset {args.preset}" + "".join(f", {s}" for s in args.set))
    catalog = load_catalog()
    tokenizer = Tokenizer.from_catalog(catalog)
    claims = generate_claims(args.claims, preset(args.preset).data_seed + HELDOUT_SEED_OFFSET, catalog)
    texts, truth = worded(claims, catalog, tokenizer)
    print(f"{len(truth)} of {len(claims)} held-out claims read as the same fields in every style\n")
    columns = [*texts, "flip rate", "ECE"]
    print("seed | " + " | ".join(columns) + " | hand-written | >99% and wrong | examples right")
    for seed in args.seeds:
        predictor = train(config, seed)
        row = measure(predictor, texts, truth)
        accuracy, wrong = handwritten(predictor)
        missed = examples_missed(predictor, catalog, tokenizer)
        examples = f"{len(EXAMPLE_CLAIMS) - len(missed)} of {len(EXAMPLE_CLAIMS)}"
        sure_and_wrong = sum(confidence > 0.99 for _, confidence in wrong)
        print(f"{seed} | " + " | ".join(f"{row[c]:.3f}" for c in columns)
              + f" | {accuracy:.3f} | {sure_and_wrong} | {examples}", flush=True)
        for miss in missed:
            print(f"    example judged otherwise than the rules: {miss}", flush=True)
        for answer, confidence in wrong:
            print(f"    hand-written, wrong{' above 99%' if confidence > 0.99 else ''}: {answer}", flush=True)


if __name__ == "__main__":
    main()
