"""Named training recipes. "default" is the live demo; "sparse" is the default with sparse attention, where heads
specialize more often; "quick" is tiny and fast, for tests and smoke checks. How each setting of the default was
chosen, measured seed by seed: docs/recipe.md."""

from __future__ import annotations

from dataclasses import replace

from engine.model.transformer import ModelConfig
from engine.training.config import TrainConfig

DEFAULT = TrainConfig(
    preset="default",
    steps=3500,
    decay_fraction=0.8,
    batch_size=256,
    lr=4e-3,
    beta2=0.98,
    pool_size=120_000,
    model=ModelConfig(d_ff=512),
)
PRESETS: dict[str, TrainConfig] = {
    "default": DEFAULT,
    "sparse": replace(DEFAULT, preset="sparse", model=replace(DEFAULT.model, sparse_attention=True)),
    "long": TrainConfig(preset="long", steps=6000, lr=2e-3, warmup_steps=200, model=ModelConfig(d_ff=256)),
    "quick": TrainConfig(
        preset="quick",
        steps=60,
        batch_size=32,
        pool_size=2000,
        heldout_size=200,
        eval_every=10,
        optim_every=5,
        warmup_steps=10,
        lr=3e-3,
        model=ModelConfig(d_model=32, d_ff=64),
    ),
}

# What each recipe is for, in the words the pages use
ABOUT = {
    "default": "the demo (a few minutes on two cores).",
    "sparse": "the default with sparse attention: a head can give a word exactly zero weight, and heads own a reason "
    "in more runs, but it learns slower and is a little less accurate.",
    "long": "an earlier, smaller recipe: 6,000 smaller steps at a lower learning rate.",
    "quick": "a tiny model that trains in seconds to try the pages; it learns almost nothing, and says so.",
}


def recipes_told() -> str:
    """Every recipe in a sentence each: 'default' is the demo. 'sparse' is ..."""
    return " ".join(f"'{name}' is {ABOUT[name]}" for name in PRESETS)


def preset(name: str) -> TrainConfig:
    """A fresh copy of a preset, safe to modify."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset '{name}' (choose from {', '.join(PRESETS)})")
    return TrainConfig.from_dict(PRESETS[name].to_dict())
