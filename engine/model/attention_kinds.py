"""The attention modules `watch` knows, and for each: how many heads it has, which elements of its parameters each
head owns (HeadSlices, for the per-head optimizer statistics), and how its attention weights are had again without
changing training. Known: nn.MultiheadAttention, Headwatch's own attention, Hugging Face transformers' attention (the
BERT family, GPT-2, Llama-style decoders, and others built the same way, whatever attn_implementation they use),
timm's Attention (fused qkv), and any module registered with register_attention.

Weights are computed again, apart, from the inputs the module was just given: without gradients, with dropout off,
and (Hugging Face) through the model's own eager attention, whose weights rows add up to 1 once dropout is off.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from engine.model.head_slices import HeadSlices, attention_slices
from engine.model.transformer import Attention, Capture

# (module, its forward's positional and keyword arguments, its output) -> its attention weights (B, H, Tq, Tk)
WeightsOf = Callable[[nn.Module, tuple, dict, Any], "torch.Tensor | None"]


@dataclass(frozen=True)
class AttentionKind:
    heads: Callable[[nn.Module], int]
    slices: Callable[[nn.Module], list[HeadSlices]]
    weights: WeightsOf
    rows_at_most_one: bool = False  # a row may rest partly on "nothing" (Headwatch's null key): it adds up to <= 1


_KINDS: dict[type, AttentionKind] = {}


class NotAttention(ValueError):
    """What a module gave, or was given, is not attention Headwatch can read; said in words, once
    (engine.recording.watch)."""


def register_attention(
    module_type: type[nn.Module],
    heads: Callable[[nn.Module], int],
    slices: Callable[[nn.Module], list[HeadSlices]],
    weights: WeightsOf,
) -> None:
    """Teach `watch` an attention module of your own. `heads(module)`: its number of heads. `slices(module)`: its
    query, key, value and output parameters, each as HeadSlices (which of its elements each head owns), for the
    per-head optimizer statistics. `weights(module, args, kwargs, output)`: its attention weights (B, H, Tq, Tk)
    for the call it was just given, each row adding up to 1, or None; called without gradients, at the steps
    attention is saved. Capture must not change training: return weights the module already computed (in its
    output, before any dropout), or compute them again without randomness (dropout off)."""
    _KINDS[module_type] = AttentionKind(heads, slices, weights)


def kind_of(module: nn.Module) -> AttentionKind | None:
    """How `watch` reads this module, or None when it is not an attention module `watch` knows."""
    registered = next((_KINDS[cls] for cls in type(module).__mro__ if cls in _KINDS), None)
    if registered is not None:
        return registered
    if _hugging_face_core(module) is not None:
        return HUGGING_FACE
    return TIMM if _is_timm_attention(module) else None


def slices_mismatch(module: nn.Module, kind: AttentionKind) -> str | None:
    """Why the module's slices do not describe its parameters, one band per head, or None when they do."""
    heads = kind.heads(module)
    own = {id(p) for p in module.parameters()}
    seen: set[int] = set()
    for slices in kind.slices(module):
        if id(slices.param) not in own:
            return f"a parameter of shape {tuple(slices.param.shape)} is not one of the module's own"
        if id(slices.param) in seen:
            return f"a parameter of shape {tuple(slices.param.shape)} is described twice"
        seen.add(id(slices.param))
        if (why := slices.mismatch(heads)) is not None:
            return why
    return None


@contextmanager
def _evaluating(module: nn.Module) -> Iterator[None]:
    """Dropout off for a call, and each submodule's own mode back after it (a part the user froze stays frozen)."""
    modes = [(m, m.training) for m in module.modules()]
    module.train(False)
    try:
        yield
    finally:
        for part, training in modes:
            part.training = training


def _named_arguments(module: nn.Module, args: tuple, kwargs: dict) -> dict[str, Any]:
    """A call's arguments by name, given by position or by name (those gathered by **kwargs among them)."""
    signature = inspect.signature(module.forward)
    bound = signature.bind(*args, **kwargs)
    named: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        if signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
            named.update(value)
        elif signature.parameters[name].kind is inspect.Parameter.VAR_POSITIONAL:
            raise NotAttention(f"its forward takes *{name}, which cannot be called again by name")
        else:
            named[name] = value
    return named


def _called_again(module: nn.Module, args: tuple, kwargs: dict, **changes: Any) -> Any:
    """The module's forward on the same arguments, some changed, with dropout off."""
    named = {**_named_arguments(module, args, kwargs), **changes}
    with _evaluating(module):
        return module.forward(**named)


def _mha_slices(module: nn.MultiheadAttention) -> list[HeadSlices]:
    if module.in_proj_weight is not None:
        stacked = [HeadSlices(module.in_proj_weight, 3)]
    else:
        stacked = [HeadSlices(p) for p in (module.q_proj_weight, module.k_proj_weight, module.v_proj_weight)]
    if module.in_proj_bias is not None:
        stacked.append(HeadSlices(module.in_proj_bias, 3))
    return [*stacked, HeadSlices(module.out_proj.weight, by_columns=True)]


def _mha_weights(module: nn.MultiheadAttention, args: tuple, kwargs: dict, output: Any) -> torch.Tensor | None:
    """nn.Transformer* layers ask for no weights: asked for again, per head (an unbatched call gives (H, Tq, Tk))."""
    _, weights = _called_again(module, args, kwargs, need_weights=True, average_attn_weights=False)
    return None if weights is None else weights if weights.dim() == 4 else weights[None]


def _own_weights(module: Attention, args: tuple, kwargs: dict, output: Any) -> torch.Tensor:
    capture: Capture = {}
    _called_again(module, args, kwargs, capture=capture)
    return capture[module.name]


register_attention(nn.MultiheadAttention, lambda m: m.num_heads, _mha_slices, _mha_weights)
_KINDS[Attention] = AttentionKind(lambda m: m.n_heads, attention_slices, _own_weights, rows_at_most_one=True)


# Hugging Face transformers: an attention module holds its config and its query, key and value projections, as
# separate Linears (BERT's query/key/value, Llama's q_proj/k_proj/v_proj) or one Conv1D (GPT-2's c_attn: q, k and v
# side by side in columns; c_attn holds k and v, q_attn q, in cross-attention). The BERT family wraps it ("self")
# with its output projection ("output.dense"): the wrapper is the module watched.
_SEPARATE = (("query", "key", "value"), ("q_proj", "k_proj", "v_proj"))
_OUTPUTS = ("o_proj", "out_proj", "c_proj", "dense")
_CACHES = ("cache", "past_key_value", "past_key_values", "layer_past")  # names across transformers versions
_MASKS = ("attention_mask", "encoder_attention_mask")


def _from_hugging_face(module: nn.Module) -> bool:
    return type(module).__module__.startswith(("transformers.", "transformers_modules."))


def _is_conv1d(layer: Any) -> bool:
    """transformers' Conv1D (GPT-2): a Linear whose weight is stored transposed, (in, out)."""
    return isinstance(layer, nn.Module) and type(layer).__name__ == "Conv1D" and _from_hugging_face(layer)


def _hugging_face_core(module: nn.Module) -> nn.Module | None:
    """The module that projects query, key and value (the module itself, or the BERT family's `self`), or None."""
    inner = getattr(module, "self", None)
    core = inner if isinstance(inner, nn.Module) else module
    if not _from_hugging_face(core) or not hasattr(getattr(core, "config", None), "_attn_implementation"):
        return None
    separate = any(all(isinstance(getattr(core, n, None), nn.Linear) for n in names) for names in _SEPARATE)
    return core if separate or _is_conv1d(getattr(core, "c_attn", None)) else None


def _hf_heads(module: nn.Module) -> int:
    core = _hugging_face_core(module)
    return int(
        getattr(core, "num_heads", None)
        or getattr(core, "num_attention_heads", None)
        or core.config.num_attention_heads
    )


def _hf_head_width(core: nn.Module, heads: int) -> int:
    return int(
        getattr(core, "head_dim", None)
        or getattr(core, "attention_head_size", None)
        or core.config.hidden_size // heads
    )


def _hf_slices(module: nn.Module) -> list[HeadSlices]:
    core = _hugging_face_core(module)
    heads = _hf_heads(module)
    width = heads * _hf_head_width(core, heads)  # all heads' features side by side
    slices = []
    for names in _SEPARATE:
        for layer in (getattr(core, n) for n in names if isinstance(getattr(core, n, None), nn.Linear)):
            shared = max(1, width // layer.out_features)  # grouped-query attention: several heads read one key
            slices += [HeadSlices(p, shared_by=shared) for p in (layer.weight, layer.bias) if p is not None]
    for layer in (getattr(core, n, None) for n in ("q_attn", "c_attn")):
        if _is_conv1d(layer):
            blocks = max(1, layer.weight.shape[1] // width)
            slices.append(HeadSlices(layer.weight, blocks, by_columns=True))
            slices += [HeadSlices(layer.bias, blocks)] if layer.bias is not None else []
    output = _hf_output(module, core)
    if isinstance(output, nn.Linear) and output.in_features == width:
        slices.append(HeadSlices(output.weight, by_columns=True))
    elif _is_conv1d(output) and output.weight.shape[0] == width:
        slices.append(HeadSlices(output.weight))
    return slices


def _hf_output(module: nn.Module, core: nn.Module) -> Any:
    if module is not core:
        return getattr(getattr(module, "output", None), "dense", None)
    return next((getattr(core, n) for n in _OUTPUTS if isinstance(getattr(core, n, None), nn.Module)), None)


class _EagerConfig:
    """A model's config, but asking for eager attention: the one implementation that returns its weights."""

    _attn_implementation = "eager"

    def __init__(self, config: Any) -> None:
        self._config = config

    def __getattr__(self, name: str) -> Any:
        return getattr(self._config, name)


@contextmanager
def _eager(core: nn.Module) -> Iterator[None]:
    """This module alone computes eager attention for a call (the model's config, shared by all, is left alone)."""
    config = core.config
    core.config = _EagerConfig(config)
    try:
        yield
    finally:
        core.config = config


def _blocked(read: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A boolean mask (True: the key is read) as eager attention adds it to the scores: 0 where a key is read, the
    lowest number where it is not (never -inf: a row with no key left is then even, as in eager attention, not NaN)."""
    return torch.zeros(read.shape, dtype=dtype, device=read.device).masked_fill(~read, torch.finfo(dtype).min)


def _eager_mask(given: Any, causal: bool, length: int, dtype: torch.dtype) -> torch.Tensor | None:
    """A Hugging Face attention mask as eager attention adds it to the scores. eager's is that already; sdpa's is a
    boolean (batch, 1, queries, keys), or None when the module's causal flag alone masks; flash attention's a
    (batch, keys) padding mask beside that flag. `causal`: the flag, which eager attention never reads."""
    if torch.is_tensor(given) and given.dim() == 4:
        return given if given.is_floating_point() else _blocked(given.bool(), dtype)
    if given is not None and not (torch.is_tensor(given) and given.dim() == 2):
        raise NotAttention(f"its attention mask ({type(given).__name__}) is not one Headwatch can read")
    read = _causal(length, given.device if given is not None else None) if causal else None
    if given is not None:
        padding = given.bool()[:, None, None, :]
        read = padding if read is None else padding & read
    return None if read is None else _blocked(read, dtype)


def _causal(length: int, device: torch.device | None) -> torch.Tensor:
    """(1, 1, length, length), True where a position reads a key: the keys up to its own."""
    return torch.ones(length, length, dtype=torch.bool, device=device).tril()[None, None]


def _hf_weights(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> torch.Tensor:
    """The module called again through its model's eager attention, with dropout off, on the same hidden states,
    position embeddings (RoPE) and mask, and no cache (a training step's cache holds this call's keys already)."""
    core = _hugging_face_core(module)
    named = _named_arguments(module, args, kwargs)
    named.update({name: None for name in _CACHES if name in named})
    hidden = named.get("hidden_states")
    if not torch.is_tensor(hidden):
        raise NotAttention("its forward was given no hidden_states to compute its attention from")
    dtype = hidden.dtype if hidden.is_floating_point() else torch.float32
    flagged = (
        core.config._attn_implementation != "eager"
        and hidden.shape[-2] > 1
        and bool(named.get("is_causal", getattr(core, "is_causal", True)))
    )  # sdpa's own default when a module says nothing
    for name in (n for n in _MASKS if n in named):
        named[name] = _eager_mask(named[name], flagged and name == "attention_mask", hidden.shape[-2], dtype)
    if "output_attentions" in inspect.signature(module.forward).parameters:
        named["output_attentions"] = True
    with _evaluating(module), _eager(core):
        weights = module.forward(**named)[1]
    if weights is None:
        raise NotAttention("its eager attention returned no weights")
    return weights


HUGGING_FACE = AttentionKind(_hf_heads, _hf_slices, _hf_weights)


# timm's Attention (vision transformers): q, k and v stacked in the rows of one Linear, qkv, as (3, heads, width)
def _is_timm_attention(module: nn.Module) -> bool:
    return (
        type(module).__name__ == "Attention"
        and type(module).__module__ in ("timm.layers.attention", "timm.models.vision_transformer")
        and isinstance(getattr(module, "qkv", None), nn.Linear)
        and isinstance(getattr(module, "proj", None), nn.Linear)
    )


def _timm_slices(module: nn.Module) -> list[HeadSlices]:
    slices = [HeadSlices(module.qkv.weight, 3)] + (
        [HeadSlices(module.qkv.bias, 3)] if module.qkv.bias is not None else []
    )
    return [*slices, HeadSlices(module.proj.weight, by_columns=True)]


def _timm_weights(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> torch.Tensor:
    """Its scores computed again as its own forward computes them (normalised query and key, its scale, its mask),
    softmaxed, without dropout."""
    named = _named_arguments(module, args, kwargs)
    x, heads = named["x"], module.num_heads
    batch, length, _ = x.shape
    q, k, _ = module.qkv(x).reshape(batch, length, 3, heads, -1).permute(2, 0, 3, 1, 4)
    q, k = module.q_norm(q), module.k_norm(k)
    scores = (q * module.scale) @ k.transpose(-2, -1)
    if named.get("is_causal"):
        scores = scores + _blocked(_causal(length, scores.device), scores.dtype)
    elif named.get("attn_mask") is not None:
        mask = named["attn_mask"]
        scores = scores + (_blocked(mask, scores.dtype) if mask.dtype == torch.bool else mask)
    return scores.softmax(-1)


TIMM = AttentionKind(lambda m: m.num_heads, _timm_slices, _timm_weights)
