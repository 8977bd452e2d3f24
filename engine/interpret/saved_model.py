"""A saved run's model and tokenizer, read for judging claims: every file is checked before it is trusted, so a
damaged, unsafe or mismatched run raises RunError instead of building a wrong or huge model.
"""

from __future__ import annotations

from pathlib import Path

import torch

from data.tokenizer import Tokenizer
from engine.model.transformer import ModelConfig
from engine.runs.layout import CONFIG, TOKENIZER
from engine.runs.reading import RunError, load_checkpoint, read_config, read_object
from engine.task.claims_model import ClaimsTransformer
from engine.task.dataset import N_CATEGORIES


def load_saved_model(folder: Path) -> tuple[ClaimsTransformer, Tokenizer, int]:
    """A saved run's model at its latest checkpoint, its tokenizer and the checkpoint's step."""
    config, tokenizer, payload = read_config(folder), _tokenizer(folder), load_checkpoint(folder)
    return _model(_model_config(config, payload), payload["model"], tokenizer), tokenizer, payload["step"]


def _tokenizer(folder: Path) -> Tokenizer:
    saved = read_object(folder, TOKENIZER)
    try:
        return Tokenizer.from_json(saved)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        raise RunError(f"{TOKENIZER} is damaged (it is not a Headwatch vocabulary)") from None


def _model_config(config: dict, payload: dict) -> ModelConfig:
    """The run's model settings, which must be those the checkpoint was trained with."""
    try:
        model_config = ModelConfig.from_dict(config.get("model", {}))
    except TypeError:
        raise RunError(f"{CONFIG} is damaged (its model settings are not what a run writes)") from None
    trained_with = payload.get("model_config")
    trained_with = trained_with if isinstance(trained_with, dict) else {}
    differences = [
        f"{k} is {trained_with[k]} in the checkpoint but {v} in {CONFIG}"
        for k, v in model_config.to_dict().items()
        if k in trained_with and trained_with[k] != v
    ]
    if differences:
        raise RunError("checkpoint does not match this run's model configuration: " + "; ".join(differences))
    return model_config


def _model(config: ModelConfig, weights: dict, tokenizer: Tokenizer) -> ClaimsTransformer:
    """The model with `weights` loaded, after checking on a weightless copy that they fit: a damaged config must
    not allocate a huge model, and a vocabulary must fit the embedding it indexes."""
    try:
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in ClaimsTransformer(config).state_dict().items()}
    except Exception:  # nn modules raise many types for impossible sizes
        raise RunError(f"{CONFIG} is damaged (its model settings cannot build a model)") from None
    found = {k: tuple(v.shape) for k, v in weights.items() if isinstance(v, torch.Tensor)}
    if expected != found:
        differing = sorted(set(expected) ^ set(found)) or [k for k in expected if expected[k] != found.get(k)]
        detail = ", ".join(f"{k} {found.get(k)} vs {expected.get(k)}" for k in differing[:3])
        raise RunError(f"checkpoint does not match this run's model configuration: {detail}")
    if config.n_categories != N_CATEGORIES:
        raise RunError(f"the model reads {config.n_categories} kinds of field, not the {N_CATEGORIES} Headwatch has")
    if len(tokenizer.vocab) != config.vocab_size:
        raise RunError(
            f"{TOKENIZER} has {len(tokenizer.vocab)} words but the model was trained on "
            f"{config.vocab_size}: they do not belong together"
        )
    if not all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point()):
        raise RunError("the checkpoint's weights are not all numbers (NaN or infinity): this model cannot judge claims")
    model = ClaimsTransformer(config)
    try:
        model.load_state_dict(weights)
    except (RuntimeError, TypeError):  # e.g. a value that cannot be copied into a weight
        raise RunError("the checkpoint's weights cannot be loaded into the model") from None
    return model
