"""The seed's encoder-decoder transformer, knowing nothing of claims: named attention capture points and a hook
point on every head.

Attention is computed explicitly, softmax(QK^T / sqrt(d)), because fused kernels never materialise the weights
that the dashboard shows. Capture points are named "<stack>.<layer>.<kind>", e.g. "encoder.0.self",
"decoder.0.cross". Capturing only stores detached copies, so it cannot change the forward result. Each attention's
`heads` (a HeadPoint) is the one place where anything reads or replaces what a head hands the output projection.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace

import torch
import torch.nn.functional as F
from entmax import entmax15, entmax_bisect
from torch import nn

CROSS_KEYS = ("embeddings", "encoder")


@dataclass
class ModelConfig:
    vocab_size: int = 512
    n_categories: int = 10
    n_targets: int = 10  # the decoder's vocabulary: what it reads and writes
    max_len: int = 48
    d_model: int = 64
    n_heads: int = 4
    d_ff: int = 128
    n_encoder_layers: int = 1
    n_decoder_layers: int = 1
    dropout: float = 0.0
    category_embedding: bool = True  # field-aware input: each token also embeds its field category
    # Where cross-attention heads choose to look from: the claim's embedded words, fields and positions, or the
    # encoder's output. Either way they read the encoder's output. Why embeddings: docs/recipe.md.
    cross_keys: str = "embeddings"
    # Starting spread of cross-attention's and the encoder's query and key weights (the rest start at 0.02): wider,
    # each head starts out looking at a few words of its own instead of evenly at all of them.
    cross_qk_init: float = 0.2
    encoder_qk_init: float = 0.2
    # Each head over a claim's words also has a "nothing" slot: a learned key with a zero value. A head whose
    # field is absent can look there instead of at some other word (a terse claim has no filler word to rest on).
    null_key: bool = True
    # Whether each word also embeds where it stands in the claim. A claim is a set of fields, so order carries
    # nothing: with positions the same claim written in another order reads as other input.
    positions: bool = False
    # Heads weigh words with entmax 1.5 instead of softmax: the same ranking, but a word scored far enough below
    # the best gets exactly zero weight, so a head can read one field and nothing else (Correia et al. 2019). Heads
    # own a reason in more runs with it, but it learns slower and is surer of its mistakes: the `sparse` recipe
    # only (docs/specialization.md).
    sparse_attention: bool = False
    # Levers on head specialization (docs/specialization.md, "Levers"), each off by default: off is the model
    # without the lever.
    # How wide what each cross-attention head reads and hands on is (its values, and its columns of the output
    # projection); None: d_model / n_heads, as wide as its queries and keys. Narrower, one head cannot carry every
    # reason's verdict: the limited-capacity explanation of why few heads specialise.
    cross_value_dim: int | None = None
    # Each cross-attention head's output is scaled by a sigmoid gate computed from the decoder's input at that
    # position (head-wise gating, Qiu et al. 2025): a head can switch itself off for answers it does not serve.
    cross_head_gate: bool = False
    # The encoder's heads alone weigh words with entmax 1.5: a word can take in a few others and no more, so
    # gathering every field's verdict at one word (a hub every reason reads) costs the encoder more.
    sparse_encoder: bool = False
    # Each cross-attention head learns its own entmax alpha in (1, 2], starting at 1.5 (Correia et al. 2019): near
    # 1 it reads like softmax, at 2 like sparsemax, so a head chooses for itself how few words it reads.
    cross_learned_alpha: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    def sized_for(self, vocabulary_size: int, n_categories: int, n_targets: int) -> ModelConfig:
        """These settings for an input vocabulary, field categories and decoder vocabulary of these sizes."""
        return replace(self, vocab_size=vocabulary_size, n_categories=n_categories, n_targets=n_targets)

    @classmethod
    def from_dict(cls, values: dict) -> ModelConfig:
        """Settings as to_dict gives them: one left out takes its default, and one this version does not know is
        ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


Capture = dict[str, torch.Tensor]
# what a head hook is given, (B, H, Tq, hd), and gives back: None to leave it, or what the output projection gets
HeadHook = Callable[[torch.Tensor], "torch.Tensor | None"]


class HeadPoint(nn.Module):
    """The identity on what an attention's heads hand its output projection, (B, H, Tq, hd): the named point where
    anything reads or replaces a head (the idea of TransformerLens's HookPoint). Without a hook it returns its
    input itself, so the model computes exactly what it would without it."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def forward(self, heads: torch.Tensor) -> torch.Tensor:
        return heads

    @contextmanager
    def hooked(self, hook: HeadHook) -> Iterator[None]:
        """`hook` sees every forward pass's head outputs for as long as the context lasts, and may replace them."""
        handle = self.register_forward_hook(lambda _module, _args, heads: hook(heads))
        try:
            yield
        finally:
            handle.remove()


@dataclass(frozen=True)
class Packing:
    """Where the real tokens of a (B, T) batch sit, to move rows between the grid and a packed (N, C) form."""

    mask: torch.Tensor  # (B, T) True at real tokens
    index: torch.Tensor  # (N,) their positions in the flattened grid

    @classmethod
    def of(cls, mask: torch.Tensor) -> Packing:
        return cls(mask, mask.reshape(-1).nonzero().squeeze(1))

    def pack(self, grid: torch.Tensor) -> torch.Tensor:
        return grid.flatten(0, 1).index_select(0, self.index)  # (B, T, ...) -> (N, ...)

    def unpack(self, packed: torch.Tensor) -> torch.Tensor:
        batch, length = self.mask.shape
        grid = packed.new_zeros(batch * length, packed.shape[-1]).index_copy(0, self.index, packed)
        return grid.view(batch, length, -1)  # (B, T, C), zeros at padding


@dataclass(frozen=True)
class Memory:
    """The encoder's output: one row per real token of the claims, and where those tokens sit."""

    tokens: torch.Tensor  # (N, C)
    packing: Packing
    key_tokens: torch.Tensor | None = None  # (N, C) what cross-attention keys are computed from, when not tokens
    # cross-attention name -> its keys and values (B, H, T, hd), for many decoder passes over the same claims
    keys_values: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None

    @property
    def batch_size(self) -> int:
        return self.packing.mask.shape[0]


@dataclass(frozen=True)
class HeadDesign:
    """How one attention's heads are built beyond the shared sizes: see ModelConfig for why each exists."""

    null_key: bool = False
    sparse: bool = False
    value_dim: int | None = None  # None: as wide as a head's queries and keys
    gated: bool = False
    learned_alpha: bool = False


class Attention(nn.Module):
    def __init__(self, config: ModelConfig, name: str, design: HeadDesign = HeadDesign()) -> None:
        super().__init__()
        assert config.d_model % config.n_heads == 0
        self.name = name
        self.n_heads = config.n_heads
        self.head_dim = config.d_model // config.n_heads
        self.value_dim = design.value_dim or self.head_dim  # the width of a head's output at its HeadPoint
        self.query = nn.Linear(config.d_model, config.d_model)
        self.key = nn.Linear(config.d_model, config.d_model)
        self.value = nn.Linear(config.d_model, config.n_heads * self.value_dim)
        self.out = nn.Linear(config.n_heads * self.value_dim, config.d_model)
        self.heads = HeadPoint(name)
        # starts at zero: every query scores "nothing" 0, between the words it favours and those it avoids
        self.null_key = nn.Parameter(torch.zeros(config.n_heads, self.head_dim)) if design.null_key else None
        self.gate = nn.Linear(config.d_model, config.n_heads) if design.gated else None
        # sigmoid(0) = 0.5: every head starts at alpha 1.5, entmax 1.5
        self.alpha_logit = nn.Parameter(torch.zeros(config.n_heads)) if design.learned_alpha else None
        self.normalize = self._learned_entmax if design.learned_alpha else entmax15 if design.sparse else torch.softmax
        # entmax sorts its scores and fails on a row of -inf (a claim with no words and no "nothing" slot): masked
        # keys score far below any real one instead, and get exactly zero all the same
        self.masked_score = -1e4 if design.sparse or design.learned_alpha else float("-inf")

    def alphas(self) -> torch.Tensor:
        """(H,) each head's entmax alpha in [1.01, 2]: bisection cannot reach softmax's alpha of exactly 1."""
        assert self.alpha_logit is not None
        return 1 + torch.sigmoid(self.alpha_logit).clamp(min=0.01)

    def _learned_entmax(self, scores: torch.Tensor, dim: int) -> torch.Tensor:
        alpha = self.alphas().view(1, -1, 1, 1).expand(*scores.shape[:-1], 1)  # (B, H, Tq, 1)
        return entmax_bisect(scores, alpha, dim=dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.n_heads, -1).transpose(1, 2)  # (B, H, T, hd)

    def keys_values(
        self, memory: torch.Tensor, memory_packing: Packing | None = None, key_tokens: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values (B, H, Tk, hd) of memory (B, Tk, C), or of its real tokens (N, C) given their packing;
        the keys from `key_tokens` (shaped as memory) when given."""
        k, v = self.key(memory if key_tokens is None else key_tokens), self.value(memory)
        if memory_packing is not None:
            k, v = memory_packing.unpack(k), memory_packing.unpack(v)
        return self._split(k), self._split(v)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        key_mask: torch.Tensor,
        capture: Capture | None = None,
        x_packing: Packing | None = None,
        memory_packing: Packing | None = None,
        keys_values: tuple[torch.Tensor, torch.Tensor] | None = None,
        key_tokens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x: (B, Tq, C) and memory: (B, Tk, C); or, given their packing, only their real tokens (N, C), with the
        result packed as x is: the projections then skip the padding, while the scores need the (B, T) grid.
        `keys_values`, when given, are memory's already projected; `key_tokens`, when given, make the keys."""
        q = self.query(x)
        if x_packing is not None:
            q = x_packing.unpack(q)
        q = self._split(q)
        k, v = keys_values if keys_values is not None else self.keys_values(memory, memory_packing, key_tokens)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)  # (B, H, Tq, Tk)
        scores = scores.masked_fill(~key_mask, self.masked_score)
        if self.null_key is None:
            weights = self.normalize(scores, dim=-1)  # (B, H, Tq, Tk)
        else:
            null = q @ self.null_key[None, :, :, None] / math.sqrt(self.head_dim)  # (B, H, Tq, 1)
            # the share a row gives "nothing" has a zero value: the words' weights add up to the rest
            weights = self.normalize(torch.cat([null, scores], dim=-1), dim=-1)[..., 1:]  # (B, H, Tq, Tk)
        if capture is not None:
            capture[self.name] = weights.detach()
        heads = weights @ v  # (B, H, Tq, hd)
        if self.gate is not None:
            gate = self.gate(x)
            gate = (gate if x_packing is None else x_packing.unpack(gate)).transpose(1, 2)  # (B, H, Tq)
            heads = heads * torch.sigmoid(gate)[..., None]
        heads = self.heads(heads)
        batch, _, length, _ = heads.shape
        heads = heads.transpose(1, 2).reshape(batch, length, -1)  # (B, T, C)
        return self.out(heads if x_packing is None else x_packing.pack(heads))


class FeedForward(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.up = nn.Linear(config.d_model, config.d_ff)
        self.down = nn.Linear(config.d_ff, config.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.relu(self.up(x)))  # ReLU, not GELU: GELU forward + backward cost 5x more on CPU here


class EncoderLayer(nn.Module):
    def __init__(self, config: ModelConfig, index: int) -> None:
        super().__init__()
        self.norm_attention = nn.LayerNorm(config.d_model)
        sparse = config.sparse_attention or config.sparse_encoder
        self.attention = Attention(config, f"encoder.{index}.self", HeadDesign(config.null_key, sparse))
        self.norm_ff = nn.LayerNorm(config.d_model)
        self.ff = FeedForward(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, packing: Packing, capture: Capture | None) -> torch.Tensor:
        """x: (N, C), the batch's real tokens packed together."""
        normed = self.norm_attention(x)
        key_mask = packing.mask[:, None, None, :]  # (B, 1, 1, T)
        x = x + self.dropout(self.attention(normed, normed, key_mask, capture, packing, packing))
        return x + self.dropout(self.ff(self.norm_ff(x)))


class DecoderLayer(nn.Module):
    def __init__(self, config: ModelConfig, index: int) -> None:
        super().__init__()
        self.norm_self = nn.LayerNorm(config.d_model)
        self.self_attention = Attention(config, f"decoder.{index}.self", HeadDesign(sparse=config.sparse_attention))
        self.norm_cross = nn.LayerNorm(config.d_model)
        cross = HeadDesign(
            config.null_key,
            config.sparse_attention,
            config.cross_value_dim,
            config.cross_head_gate,
            config.cross_learned_alpha,
        )
        self.cross_attention = Attention(config, f"decoder.{index}.cross", cross)
        self.norm_ff = nn.LayerNorm(config.d_model)
        self.ff = FeedForward(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, y: torch.Tensor, memory: Memory, capture: Capture | None) -> torch.Tensor:
        length = y.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool, device=y.device).tril()[None, None]  # (1,1,T,T)
        normed = self.norm_self(y)
        y = y + self.dropout(self.self_attention(normed, normed, causal, capture))
        key_mask = memory.packing.mask[:, None, None, :]  # (B, 1, 1, T)
        cached = memory.keys_values.get(self.cross_attention.name) if memory.keys_values else None
        y = y + self.dropout(
            self.cross_attention(
                self.norm_cross(y),
                memory.tokens,
                key_mask,
                capture,
                memory_packing=memory.packing,
                keys_values=cached,
                key_tokens=memory.key_tokens,
            )
        )
        return y + self.dropout(self.ff(self.norm_ff(y)))


class EncoderDecoder(nn.Module):
    """Embedding + positional encoding -> encoder layers -> decoder layers -> output projection."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.d_model, padding_idx=0)
        self.category_embedding = nn.Embedding(config.n_categories, config.d_model)
        self.position_embedding = nn.Embedding(config.max_len, config.d_model) if config.positions else None
        self.target_embedding = nn.Embedding(config.n_targets, config.d_model)
        self.target_position = nn.Embedding(4, config.d_model)
        self.encoder = nn.ModuleList(EncoderLayer(config, i) for i in range(config.n_encoder_layers))
        self.decoder = nn.ModuleList(DecoderLayer(config, i) for i in range(config.n_decoder_layers))
        self.norm_memory = nn.LayerNorm(config.d_model)
        self.norm_keys = nn.LayerNorm(config.d_model) if config.cross_keys == "embeddings" else None
        self.norm_out = nn.LayerNorm(config.d_model)
        self.output = nn.Linear(config.d_model, config.n_targets)
        self.apply(self._init_weights)
        spreads = [(layer.cross_attention, config.cross_qk_init) for layer in self.decoder]
        spreads += [(layer.attention, config.encoder_qk_init) for layer in self.encoder]
        for attention, std in spreads:
            nn.init.normal_(attention.query.weight, std=std)
            nn.init.normal_(attention.key.weight, std=std)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def attention_named(self, name: str) -> Attention:
        return next(m for m in self.modules() if isinstance(m, Attention) and m.name == name)

    def attention_names(self) -> list[str]:
        names = [layer.attention.name for layer in self.encoder]
        for layer in self.decoder:
            names += [layer.self_attention.name, layer.cross_attention.name]
        return names

    def encode(self, tokens: torch.Tensor, categories: torch.Tensor, capture: Capture | None = None) -> Memory:
        # about half of a batch's (B, T) grid is padding: the encoder works on the real tokens only
        packing = Packing.of(tokens != 0)
        x = self.token_embedding(packing.pack(tokens))  # (N, C)
        if self.position_embedding is not None:
            positions = torch.arange(tokens.shape[1], device=tokens.device).expand_as(tokens)
            x = x + self.position_embedding(packing.pack(positions))
        if self.config.category_embedding:
            x = x + self.category_embedding(packing.pack(categories))
        key_tokens = self.norm_keys(x) if self.norm_keys is not None else None
        for layer in self.encoder:
            x = layer(x, packing, capture)
        return Memory(self.norm_memory(x), packing, key_tokens)

    @torch.no_grad()
    def with_keys_values(self, memory: Memory) -> Memory:
        """The memory with every cross-attention's keys and values computed once: they depend neither on the
        decoder's input nor on its heads' outputs, so repeated decoder passes over the same claims reuse them."""
        keys_values = {
            layer.cross_attention.name: layer.cross_attention.keys_values(
                memory.tokens, memory.packing, memory.key_tokens
            )
            for layer in self.decoder
        }
        return replace(memory, keys_values=keys_values)

    def decode(self, targets: torch.Tensor, memory: Memory, capture: Capture | None = None) -> torch.Tensor:
        positions = torch.arange(targets.shape[1], device=targets.device)
        y = self.target_embedding(targets) + self.target_position(positions)[None]  # (B, S, C)
        for layer in self.decoder:
            y = layer(y, memory, capture)
        return self.output(self.norm_out(y))  # (B, S, V_target)

    def forward(
        self, tokens: torch.Tensor, categories: torch.Tensor, targets: torch.Tensor, capture: Capture | None = None
    ) -> torch.Tensor:
        """Teacher-forced logits. tokens, categories: (B, T); targets: (B, S) decoder inputs."""
        return self.decode(targets, self.encode(tokens, categories, capture), capture)
