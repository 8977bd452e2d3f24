"""The attention modules of someone's model as `watch` sees them: which of its modules are attention that watch knows
(engine.model.attention_kinds), what it says it found, and the checks a module's weights pass before they are saved."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from engine.model.attention_kinds import AttentionKind, NotAttention, kind_of, slices_mismatch
from engine.recording.logger import headwatch_logger, warn

ROW_SUM_TOLERANCE = 0.02  # weights rounded to bfloat16 stay within it; weights after dropout rarely do


def check_slices(name: str, module: nn.Module) -> None:
    """Slices that do not cut each parameter into one band per head are refused up front, in words."""
    why = slices_mismatch(module, kind_of(module))
    if why is not None:
        raise ValueError(
            f"attention module {name!r} ({type(module).__name__}): {why}; check its register_attention call"
        )


def attention_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Every attention module of the model that `watch` knows (see engine.model.attention_kinds), by its name in the
    model; one found inside another (BERT's self-attention inside its attention block) is the outer one's part."""
    model = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    found: dict[str, nn.Module] = {}
    for name, module in model.named_modules():
        inside = any(name.startswith(f"{outer}.") or not outer for outer in found)
        if not inside and kind_of(module) is not None:
            found[name] = module
    return {name or type(module).__name__: module for name, module in found.items()}  # the model itself: its type


def attention_candidates(model: nn.Module) -> list[str]:
    """The class names of the model's modules that look like attention by name, for a model in which `watch` found
    none it knows."""
    return sorted({type(m).__name__ for m in model.modules() if re.search("attention|attn", type(m).__name__, re.I)})


def detached(value: Any) -> Any:
    """A call's tensors, in the tuples, lists and dicts that hold them, cut from the autograd graph."""
    if torch.is_tensor(value):
        return value.detach()
    if isinstance(value, tuple | list):
        return type(value)(detached(v) for v in value) if type(value) in (tuple, list) else value
    return {k: detached(v) for k, v in value.items()} if type(value) is dict else value


def check_attention_rows(weights: torch.Tensor, at_most_one: bool) -> None:
    """Each query's weights over its keys are shares of its attention: >= 0, adding up to 1 (<= 1 where a head may
    rest on "nothing"). Scores before the softmax, or weights after dropout, are refused."""
    if not torch.isfinite(weights).all() or (weights < 0).any():
        raise NotAttention("its weights are not all finite and >= 0: not attention weights after a softmax")
    sums = weights.sum(-1)
    low, high = float(sums.min()), float(sums.max())
    if high > 1 + ROW_SUM_TOLERANCE or (not at_most_one and low < 1 - ROW_SUM_TOLERANCE):
        raise NotAttention(f"its weights' rows add up to {low:.2f} to {high:.2f}, not 1 (weights after dropout?)")


def say_what_was_found(
    model: nn.Module, attention: Mapping[str, nn.Module], kinds: Mapping[str, AttentionKind]
) -> None:
    if not attention:
        candidates = attention_candidates(model)
        named = (
            (
                f"modules that look like attention: {', '.join(candidates)}; teach it one with "
                "headwatch.register_attention"
            )
            if candidates
            else "no module's class is named like attention"
        )
        warn(
            f"watch found no attention module it knows in {type(model).__name__} ({named}). Only the loss and "
            "your metrics are recorded"
        )
        return
    described = [
        f"{name} ({type(module).__name__}, {kinds[name].heads(module)} heads)" for name, module in attention.items()
    ]
    shown = described if len(described) <= 4 else [*described[:2], "...", described[-1]]
    headwatch_logger().info("watch records %d attention modules: %s", len(described), ", ".join(shown))
