"""The tokens of a watched model's examples: turning token ids into their texts with whatever tokenizer was
given, and finding the token ids among a model's inputs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

Tokenizer = Any  # anything with convert_ids_to_tokens or decode, or a function from a token id to its text


def token_texts(tokenizer: Tokenizer) -> Callable[[list[int]], list[str]]:
    """How a tokenizer, as `watch` takes it, turns one example's token ids into their texts; TypeError, in words, for
    something that cannot."""
    if callable(getattr(tokenizer, "convert_ids_to_tokens", None)):  # a Hugging Face tokenizer: its own tokens
        return tokenizer.convert_ids_to_tokens
    if callable(getattr(tokenizer, "decode", None)):
        return lambda ids: [tokenizer.decode([i]) for i in ids]
    if callable(tokenizer):
        return lambda ids: [tokenizer(i) for i in ids]
    raise TypeError(
        f"tokenizer must have convert_ids_to_tokens or decode, or be a function from a token id to its "
        f"text (got {type(tokenizer).__name__})"
    )


def token_ids(inputs: Any) -> torch.Tensor | None:
    """The (batch, positions) token ids among a model's inputs or a batch: `input_ids` of a dict, or the first whole
    number tensor of two dimensions of a tuple or list (a dict inside it, as a forward's keyword arguments, first)."""
    if torch.is_tensor(inputs):
        whole_numbers = not (inputs.is_floating_point() or inputs.is_complex() or inputs.dtype == torch.bool)
        return inputs if whole_numbers and inputs.dim() == 2 else None
    if isinstance(inputs, Mapping):
        return token_ids(inputs.get("input_ids"))
    if isinstance(inputs, tuple | list):
        return next((ids for ids in map(token_ids, inputs) if ids is not None), None)
    return None
