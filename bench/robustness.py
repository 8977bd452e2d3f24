"""Does the verdict depend on the wording? Train the preset for several seeds (or take saved runs), then judge the
same held-out claims in the generator's wording and rewritten from their fields in plain styles (data/styles.py),
and the hand-written claims (data/handwritten_claims.csv), as a pasted claim is judged: read by the reader first, so
a claim it refuses (a part not read) counts as not answered right. Per seed: exact-match accuracy per style, the
share of claims whose answer changes with the wording alone, expected calibration error on the rewritten styles'
answers given, answers above 99% confidence that the rules checker contradicts (every hand-written claim answered
wrongly or refused is named), the claims refused; and how many of the app's example claims it judges as the rules do.

Run: .venv/bin/python -m bench.robustness [--preset default] [--seeds 0 1 2 3 4] [--claims 600] [--set NAME=VALUE]
     .venv/bin/python -m bench.robustness --runs studies/default [RUN_OR_STUDY ...]   (measures saved runs, trains
     nothing: a run folder, or a study folder for its finished seed-N runs)
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from data.catalog import Catalog, load_catalog
from data.generator import generate_claims
from data.rules import label
from data.styles import STYLES
from data.tokenizer import Tokenizer
from data.vocabulary import parse_claim
from engine.interpret.inference import Predictor
from engine.interpret.metrics import expected_calibration_error
from engine.interpret.prediction import Prediction, verdict_to_outcome
from engine.runs.layout import CONFIG
from engine.runs.reading import RunError, read_config, read_status
from engine.task.claims_csv import read_claims_file
from engine.task.dataset import EXAMPLE_CLAIMS, HELDOUT_SEED_OFFSET
from engine.telemetry import TelemetryHub
from engine.training.config import TrainConfig
from engine.training.presets import preset
from engine.training.trainer import Trainer

HANDWRITTEN = Path(__file__).resolve().parents[1] / "data" / "handwritten_claims.csv"
GENERATOR = "generator's wording"
REFUSED = "cannot judge"  # the answer of a claim the reader refuses: never the right one


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


def answer(p: Prediction) -> str:
    """The verdict a user is given: the model's outcome, or that the claim cannot be judged."""
    return p.outcome if p.judged else REFUSED


def measure(predictor: Predictor, texts: dict[str, list[str]], truth: list[str]) -> tuple[dict[str, float], int]:
    """Accuracy per style, flip rate, ECE of the answers given on the rewritten styles; and the claims refused."""
    outcomes, confident, correct = {}, [], []
    for name, batch in texts.items():
        predictions = predictor.predict_many(batch)
        outcomes[name] = [answer(p) for p in predictions]
        if name != GENERATOR:
            given = [(p, t) for p, t in zip(predictions, truth, strict=True) if p.judged]
            confident += [p.confidence or 0.0 for p, _ in given]
            correct += [p.outcome == t for p, t in given]
    row = {name: sum(o == t for o, t in zip(got, truth, strict=True)) / len(truth) for name, got in outcomes.items()}
    answers = list(zip(*outcomes.values(), strict=True))
    row["flip rate"] = sum(len(set(a)) > 1 for a in answers) / len(answers)
    row["ECE"] = expected_calibration_error(confident, correct)
    return row, sum(o == REFUSED for got in outcomes.values() for o in got)


def handwritten(predictor: Predictor) -> tuple[float, list[tuple[str, float]], list[str]]:
    """Exact-match accuracy on the hand-written claims (a refusal is not right), each claim answered otherwise than
    the rules, in words, with the model's confidence, and each claim refused with why."""
    claims = read_claims_file(HANDWRITTEN)
    predictions = predictor.predict_many(claims.texts)
    truth = [verdict_to_outcome(v, r) for v, r in zip(claims.verdicts, claims.reasons, strict=True)]
    accuracy = sum(answer(p) == t for p, t in zip(predictions, truth, strict=True)) / len(truth)
    wrong = [
        (f"{text!r}: {p.outcome} at {p.confidence:.2%}, the rules say {t}", p.confidence or 0.0)
        for text, p, t in zip(claims.texts, predictions, truth, strict=True)
        if p.judged and p.outcome != t
    ]
    refused = [
        f"{text!r} (the rules say {t}): {p.refusal.sentence() if p.refusal else p.error}"
        for text, p, t in zip(claims.texts, predictions, truth, strict=True)
        if not p.judged
    ]
    return accuracy, wrong, refused


def examples_missed(predictor: Predictor, catalog: Catalog, tokenizer: Tokenizer) -> list[str]:
    """The app's example claims the model does not judge as the rules checker does, with its answer."""
    missed = []
    for text, prediction in zip(EXAMPLE_CLAIMS, predictor.predict_many(list(EXAMPLE_CLAIMS)), strict=True):
        if answer(prediction) != verdict_to_outcome(*label(parse_claim(tokenizer.encode(text)), catalog)):
            missed.append(f"{text!r}: {answer(prediction)} at {prediction.confidence or 0.0:.0%}")
    return missed


def saved_runs(paths: list[Path]) -> list[tuple[str, Path]]:
    """(name, folder) of each run named: a run folder as itself, a study folder as its seed-N runs in seed order."""
    runs = []
    for path in paths:
        if (path / CONFIG).is_file():
            runs.append((str(path), path))
            continue
        seeds = sorted(
            (int(p.name.removeprefix("seed-")), p)
            for p in path.glob("seed-*")
            if p.name.removeprefix("seed-").isdecimal() and (p / CONFIG).is_file()
        )
        if not seeds:
            raise SystemExit(f"{path} is neither a run folder (it has no {CONFIG}) nor a study folder (no seed-N runs)")
        runs += [(f"{path.name}/seed-{seed}", folder) for seed, folder in seeds]
    return runs


def saved_predictors(paths: list[Path]) -> Iterator[tuple[str, Predictor | None, int]]:
    """(name, predictor, data seed) of each finished saved run; None, with why printed, for one not finished or
    damaged."""
    for name, folder in saved_runs(paths):
        status = read_status(folder)
        if (status or {}).get("status") != "finished":
            print(f"{name}: not measured, its status is {(status or {}).get('status', 'unreadable')}", flush=True)
            yield name, None, 0
            continue
        try:
            yield name, Predictor.from_run(folder), int(read_config(folder)["data_seed"])
        except (RunError, KeyError, ValueError) as error:
            print(f"{name}: not measured, {error}", flush=True)
            yield name, None, 0


def trained_predictors(config: TrainConfig, seeds: list[int]) -> Iterator[tuple[str, Predictor | None, int]]:
    for seed in seeds:
        yield str(seed), train(config, seed), config.data_seed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="default")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--claims", type=int, default=600, help="held-out claims rewritten in every style")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="change one setting of the preset (its own or its model's), e.g. --set pool_size=120000",
    )
    parser.add_argument(
        "--runs",
        type=Path,
        nargs="+",
        metavar="RUN_OR_STUDY",
        help="measure these saved runs (a run folder, or a study folder for its seed-N runs) instead "
        "of training; --preset, --seeds and --set do not apply",
    )
    args = parser.parse_args()
    if args.runs and args.set:
        parser.error("--set changes what is trained; saved runs (--runs) are measured as they are")
    catalog = load_catalog()
    tokenizer = Tokenizer.from_catalog(catalog)
    if args.runs:
        print("saved runs: " + ", ".join(map(str, args.runs)))
        predictors = saved_predictors(args.runs)
    else:
        config = recipe(args.preset, args.set)
        print(f"preset {args.preset}" + "".join(f", {s}" for s in args.set))
        predictors = trained_predictors(config, args.seeds)
    held_out: dict[int, tuple[dict[str, list[str]], list[str]]] = {}
    print(
        "seed | styles ... | flip rate | ECE | refused of the styles' claims | hand-written | refused of them | "
        ">99% and wrong | examples right",
        flush=True,
    )
    for name, predictor, data_seed in predictors:
        if predictor is None:
            continue
        if data_seed not in held_out:
            claims = generate_claims(args.claims, data_seed + HELDOUT_SEED_OFFSET, catalog)
            held_out[data_seed] = worded(claims, catalog, tokenizer)
            texts, truth = held_out[data_seed]
            print(
                f"data seed {data_seed}: {len(truth)} of {len(claims)} held-out claims read as the same fields in "
                f"every style; columns: {' | '.join(texts)}",
                flush=True,
            )
        report(name, predictor, *held_out[data_seed], catalog, tokenizer)


def report(
    name: str,
    predictor: Predictor,
    texts: dict[str, list[str]],
    truth: list[str],
    catalog: Catalog,
    tokenizer: Tokenizer,
) -> None:
    """One seed's row, and every example and hand-written claim it misses, in words."""
    row, refused = measure(predictor, texts, truth)
    accuracy, wrong, refused_handwritten = handwritten(predictor)
    missed = examples_missed(predictor, catalog, tokenizer)
    examples = f"{len(EXAMPLE_CLAIMS) - len(missed)} of {len(EXAMPLE_CLAIMS)}"
    sure_and_wrong = sum(confidence > 0.99 for _, confidence in wrong)
    print(
        f"{name} | "
        + " | ".join(f"{row[c]:.3f}" for c in [*texts, "flip rate", "ECE"])
        + f" | {refused} of {len(truth) * len(texts)} | {accuracy:.3f} | {len(refused_handwritten)} of "
        f"{len(read_claims_file(HANDWRITTEN).texts)} | {sure_and_wrong} | {examples}",
        flush=True,
    )
    for miss in missed:
        print(f"    example judged otherwise than the rules: {miss}", flush=True)
    for said, confidence in wrong:
        print(f"    hand-written, wrong{' above 99%' if confidence > 0.99 else ''}: {said}", flush=True)
    for said in refused_handwritten:
        print(f"    hand-written, refused: {said}", flush=True)


if __name__ == "__main__":
    main()
