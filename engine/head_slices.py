"""Which elements of an attention module's parameters belong to which head: one description, read both by
Headwatch's own per-head optimizer statistics (engine.metrics) and by `watch` for any registered module."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from engine.model import Attention


@dataclass(frozen=True)
class HeadSlices:
    """A parameter whose elements the heads of an attention module share out: head h owns the h-th of `heads`
    equal bands of its rows (of each of `blocks` stacked blocks, as query, key and value stacked in one tensor:
    3), or of its columns (`by_columns`: an output projection that reads the heads side by side)."""

    param: nn.Parameter
    blocks: int = 1
    by_columns: bool = False

    def by_head(self, tensor: torch.Tensor, heads: int) -> torch.Tensor:
        """`tensor` (this parameter, or its gradient or optimizer state) as (heads, its elements of each head)."""
        if self.by_columns:  # (rows, heads * width) -> (heads, rows * width)
            return tensor.reshape(tensor.shape[0], heads, -1).transpose(0, 1).reshape(heads, -1)
        # (blocks * heads * width, ...) -> (heads, blocks * width * ...)
        return tensor.reshape(self.blocks, heads, -1).transpose(0, 1).reshape(heads, -1)

    def head_of_each_element(self, heads: int) -> torch.Tensor:
        """(numel,) the head that owns each element of the parameter, flattened."""
        owner = torch.empty(self.param.numel(), dtype=torch.long)
        elements = self.by_head(torch.arange(self.param.numel()).reshape(self.param.shape), heads)  # (H, numel / H)
        owner[elements] = torch.arange(heads)[:, None]
        return owner


def attention_slices(module: Attention) -> list[HeadSlices]:
    """Headwatch's own attention: query, key and value rows, the "nothing" key's rows and the output projection's
    columns belong to heads (the output bias to none)."""
    layers = (module.query, module.key, module.value)
    slices = [HeadSlices(p) for layer in layers for p in (layer.weight, layer.bias)]
    slices += [HeadSlices(module.null_key)] if module.null_key is not None else []
    return [*slices, HeadSlices(module.out.weight, by_columns=True)]
