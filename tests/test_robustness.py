"""The verdict does not depend on the wording, and a seed repeats its run."""

from __future__ import annotations

import statistics
import time

import pytest
import torch

from bench.robustness import GENERATOR, worded
from data.catalog import Catalog, load_catalog
from data.generator import generate_claims
from data.tokenizer import Tokenizer
from engine.interpret.inference import Predictor
from engine.model.transformer import ModelConfig
from engine.task.claims_model import ClaimsTransformer
from engine.telemetry import TelemetryHub
from engine.training.config import TrainConfig
from engine.training.presets import preset
from engine.training.trainer import Trainer

STYLE_TOLERANCE = 0.02  # the most any style may fall below the generator's own wording, beyond the sampling noise


def train(config: TrainConfig) -> Trainer:
    trainer = Trainer(TelemetryHub())
    trainer.start(config)
    while trainer.active:
        time.sleep(0.05)
    assert trainer.hub.snapshot().status == "finished", trainer.hub.snapshot().message
    return trainer


def _claim_batch(model: ClaimsTransformer, order: list[int]) -> torch.Tensor:
    tokens = torch.tensor([[11, 52, 709, 643, 460][i] for i in order])[None]  # (1, T)
    categories = torch.tensor([[1, 2, 3, 5, 9][i] for i in order])[None]
    return model.class_log_probs(tokens, categories)


@pytest.mark.parametrize("positions", [False, True])
def test_a_claim_written_in_another_order_gets_the_same_answer(positions: bool) -> None:
    torch.manual_seed(0)
    model = ClaimsTransformer(ModelConfig(vocab_size=800, positions=positions)).eval()
    for param in model.parameters():  # a model that has learned something: weights far from their start
        torch.nn.init.normal_(param, std=0.3)
    same = torch.allclose(_claim_batch(model, [0, 1, 2, 3, 4]), _claim_batch(model, [3, 0, 4, 2, 1]), atol=1e-5)
    assert same != positions  # runs saved before positions were dropped still read order, as they were trained


@pytest.mark.parametrize("null_key", [True, False])
def test_a_head_can_look_at_nothing(null_key: bool) -> None:
    torch.manual_seed(0)
    model = ClaimsTransformer(ModelConfig(vocab_size=800, null_key=null_key)).eval()
    capture: dict[str, torch.Tensor] = {}
    model.class_log_probs(torch.tensor([[11, 52, 709]]), torch.tensor([[1, 2, 3]]), capture)
    rows = {name: weights.sum(-1) for name, weights in capture.items()}  # (B, H, Tq)
    assert torch.allclose(rows["decoder.0.self"], torch.ones(1))  # the decoder always has its own words
    for name in ("encoder.0.self", "decoder.0.cross"):
        if null_key:
            assert (rows[name] < 1 - 1e-4).all(), name  # every row gives "nothing" a share
        else:
            assert torch.allclose(rows[name], torch.ones(1)), name


@pytest.fixture(scope="module")
def trained_model() -> Predictor:
    """The default recipe's model after 800 steps (about 95% held out). The quick recipe's model is too small: over
    seeds 0-4 it stays near 88% and a style fell up to 6 points below the generator's wording (docs/robustness.md)."""
    config = preset("default")
    config.steps, config.pool_size, config.eval_every = 800, 24_000, 800
    return train(config).live_model().predictor()


@pytest.mark.slow
def test_every_plain_style_is_judged_as_well_as_the_generators_wording(trained_model: Predictor) -> None:
    catalog: Catalog = load_catalog()
    tokenizer = Tokenizer.from_catalog(catalog)
    texts, truth = worded(generate_claims(1000, 12345, catalog), catalog, tokenizer)
    assert len(truth) > 900  # nearly every claim reads as the same fields in every style
    right = {
        style: [p.outcome == t for p, t in zip(trained_model.predict_many(batch), truth, strict=True)]
        for style, batch in texts.items()
    }
    assert statistics.mean(right[GENERATOR]) > 0.8  # the model has learned enough for the comparison to mean something
    for style, marks in right.items():
        deficit = [int(g) - int(s) for g, s in zip(right[GENERATOR], marks, strict=True)]  # 1: only the generator's
        noise = 2 * statistics.pstdev(deficit) / len(deficit) ** 0.5  # two standard errors over these claims
        assert statistics.mean(deficit) - noise <= STYLE_TOLERANCE, (style, statistics.mean(deficit), noise)


@pytest.mark.slow
def test_the_same_seed_repeats_the_run_bit_for_bit() -> None:
    runs = [train(preset("quick")) for _ in range(2)]
    first, second = (run.hub.snapshot() for run in runs)
    assert first.loss.values == second.loss.values
    assert [e.heldout_accuracy for e in first.evals] == [e.heldout_accuracy for e in second.evals]
    weights = [run.live_model().weights for run in runs]
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])
