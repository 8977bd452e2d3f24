"""Which elements of an attention module's parameters belong to which head: one description, read both by
Headwatch's own per-head optimizer statistics (engine.interpret.metrics) and by `watch` for any attention module it
knows."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from engine.model.transformer import Attention


@dataclass(frozen=True)
class HeadSlices:
    """A parameter whose elements the heads of an attention module share out. Its rows (or, `by_columns`, its
    columns) are `blocks` stacked blocks (query, key and value in one tensor: 3), each cut into equal bands, one per
    head: head h owns the h-th band of every block. Rows: a Linear's query, key or value weight and bias, a GPT-2
    Conv1D's output weight; columns: a Linear's output weight (it reads the heads side by side), a Conv1D's fused
    query-key-value weight. `shared_by`: several heads read one band (grouped-query attention's keys and values),
    each counts it as its own."""

    param: nn.Parameter
    blocks: int = 1
    by_columns: bool = False
    shared_by: int = 1

    def mismatch(self, heads: int) -> str | None:
        """Why these slices do not cut the parameter into equal bands for `heads` heads, or None when they do."""
        shape = tuple(self.param.shape)
        if heads < 1 or self.blocks < 1 or self.shared_by < 1 or heads % self.shared_by:
            return f"{heads} heads, {self.blocks} blocks, bands shared by {self.shared_by} heads do not make bands"
        if self.by_columns and len(shape) != 2:
            return f"a parameter of shape {shape} has no columns to split"
        size = shape[1] if self.by_columns else shape[0] if shape else 0
        bands = self.blocks * heads // self.shared_by
        if size % bands:
            side = "columns" if self.by_columns else "rows"
            return (
                f"a parameter of shape {shape} cannot be split into {self.blocks} blocks of "
                f"{heads // self.shared_by} equal bands of {side}"
            )
        return None

    def by_head(self, tensor: torch.Tensor, heads: int) -> torch.Tensor:
        """`tensor` (this parameter, or its gradient or optimizer state) as (heads, its elements of each head)."""
        bands = heads // self.shared_by
        if self.by_columns:  # (rows, blocks * bands * width) -> (bands, rows * blocks * width)
            banded = tensor.reshape(tensor.shape[0], self.blocks, bands, -1).permute(2, 0, 1, 3).reshape(bands, -1)
        else:  # (blocks * bands * width, ...) -> (bands, blocks * width * ...)
            banded = tensor.reshape(self.blocks, bands, -1).transpose(0, 1).reshape(bands, -1)
        return banded.repeat_interleave(self.shared_by, dim=0) if self.shared_by > 1 else banded

    def head_of_each_element(self, heads: int) -> torch.Tensor:
        """(numel,) the head that owns each element of the parameter, flattened (no element is shared)."""
        if self.shared_by > 1:
            raise ValueError("an element shared by several heads has no one head")
        owner = torch.empty(self.param.numel(), dtype=torch.long)
        elements = self.by_head(torch.arange(self.param.numel()).reshape(self.param.shape), heads)  # (H, numel / H)
        owner[elements] = torch.arange(heads)[:, None]
        return owner


def attention_slices(module: Attention) -> list[HeadSlices]:
    """Headwatch's own attention: query, key and value rows, the "nothing" key's rows, the gate's rows, the entmax
    alphas and the output projection's columns belong to heads (the output bias to none)."""
    layers = (module.query, module.key, module.value, *([module.gate] if module.gate is not None else []))
    slices = [HeadSlices(p) for layer in layers for p in (layer.weight, layer.bias)]
    slices += [HeadSlices(p) for p in (module.null_key, module.alpha_logit) if p is not None]
    return [*slices, HeadSlices(module.out.weight, by_columns=True)]
