"""Activation patching: running the model with some heads' outputs replaced, which every causal measurement of a head
shares, and patching one head between minimal-pair twins (Heimersheim & Nanda 2024, "How to use and interpret
activation patching").

Between twins, each head's output is patched and scored by the logit difference log P(reason) - log P(VALID),
normalised by the gap between the twins: **necessity** puts the valid twin's head output into the invalid claim
(how much of the reason goes when that head no longer sees the problem); **sufficiency** puts the invalid twin's into
the valid claim (how much of the reason that head brings alone). Necessity is also measured for heads in pairs, since
two heads that can each stand in for the other (a backup) look unneeded one at a time.

Every read and replacement of a head goes through its attention's HeadPoint (engine.model.transformer). What a head
sees when it is taken away on held-out claims (resample ablation): engine.interpret.attribution.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch

from data.rules import CLASSES
from engine.interpret.pairs import CHECKS, PairBatch, reason_of
from engine.model.transformer import Attention, Memory, Packing
from engine.task.claims_model import ClaimsTransformer
from engine.task.dataset import ClaimTensors

MIN_GAP = 1e-6  # logit difference between twins below which a check is not measured

Run = Callable[[torch.Tensor | None, torch.Tensor | None], tuple[torch.Tensor, torch.Tensor]]


def encoded(model: ClaimsTransformer, claims: ClaimTensors) -> Memory:
    """The claims encoded once, with every cross-attention's keys and values, for many decoder passes."""
    with torch.no_grad():
        return model.with_keys_values(model.encode(claims.tokens, claims.categories))


def memory_rows(memory: Memory, index: torch.Tensor) -> Memory:
    """The memory of the claims at `index` (B',), in that order, repeats allowed."""
    grid = memory.packing.mask
    packing = Packing.of(grid[index])
    # where each word of the grid sits among the packed rows, read at the chosen claims' words
    packed_at = torch.full((grid.numel(),), -1, dtype=torch.long, device=grid.device)
    packed_at[memory.packing.index] = torch.arange(len(memory.packing.index), device=grid.device)
    chosen = packed_at.view(grid.shape)[index].reshape(-1).index_select(0, packing.index)
    keys_values = {name: (k[index], v[index]) for name, (k, v) in (memory.keys_values or {}).items()}
    key_tokens = None if memory.key_tokens is None else memory.key_tokens[chosen]
    return Memory(memory.tokens[chosen], packing, key_tokens, keys_values)


def patched_runner(
    model: ClaimsTransformer, claims: ClaimTensors, attention: Attention, copies: int = 1, memory: Memory | None = None
) -> Run:
    """run(source, which) -> the outcome log-probs (B * copies, 5) of `copies` copies of the claims (copy k in rows
    k*B to (k+1)*B - 1), and what their heads handed the output projection (B * copies, H, T, hd), read at the
    attention's HeadPoint; where `which` ((H,) or (B * copies, H)) is true, that head's output is replaced by
    source's (nothing replaced when source is None). A cross-attention's claims are encoded once (or given as
    `memory`, from `encoded`): replacing one of its heads changes only the decoder's passes."""
    copied = torch.arange(len(claims), device=claims.tokens.device).repeat(copies)
    if attention.name.startswith("encoder."):
        claims = claims if copies == 1 else claims.subset(copied)

        def forward() -> torch.Tensor:
            return model.class_log_probs(claims.tokens, claims.categories)
    else:
        memory = encoded(model, claims) if memory is None else memory
        memory = memory if copies == 1 else memory_rows(memory, copied)

        def forward() -> torch.Tensor:
            return model.outcome_log_probs(memory)

    def run(source: torch.Tensor | None = None, which: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        seen: list[torch.Tensor] = []

        def hook(heads: torch.Tensor) -> torch.Tensor | None:
            seen.append(heads.detach())
            if source is None:
                return None
            chosen = which.view(-1 if which.dim() == 2 else 1, attention.n_heads, 1, 1)
            return torch.where(chosen, source, heads)

        with torch.no_grad(), attention.heads.hooked(hook):
            log_probs = forward()
        return log_probs, seen[0]

    return run


def heads_chosen(n_heads: int, *heads: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(H,) True at `heads`: which heads a run replaces."""
    chosen = torch.zeros(n_heads, dtype=torch.bool, device=device)
    chosen[list(heads)] = True
    return chosen


def rows_by_check(checks: tuple[str, ...]) -> dict[str, list[int]]:
    """check -> the rows of a pair batch that test it, in the order checks first appear."""
    return {c: [i for i, row in enumerate(checks) if row == c] for c in dict.fromkeys(checks)}


def _per_check(log_probs: torch.Tensor, checks: tuple[str, ...]) -> dict[str, float]:
    """Mean logit difference log P(reason) - log P(VALID) over each check's rows, the reason being the check's."""
    reasons = torch.tensor([CLASSES.index(reason_of(c)) for c in checks], device=log_probs.device)
    differences = log_probs.gather(1, reasons[:, None]).squeeze(1) - log_probs[:, 0]  # (B,)
    return {c: float(differences[index].mean()) for c, index in rows_by_check(checks).items()}


def patch_twins(
    model: ClaimsTransformer, attention: Attention, pairs: PairBatch, memories: tuple[Memory, Memory]
) -> tuple[list[tuple[dict, dict]], dict[tuple[int, int], dict]]:
    """Per head: (necessity, sufficiency) per check; and per pair of heads (i < j), the necessity per check of the
    two together, both shown what they saw on the twin. `memories`: the invalid and the valid twins encoded."""
    invalid = patched_runner(model, pairs.invalid, attention, memory=memories[0])
    valid = patched_runner(model, pairs.valid, attention, memory=memories[1])
    (invalid_log_probs, invalid_heads), (valid_log_probs, valid_heads) = invalid(), valid()
    high, low = _per_check(invalid_log_probs, pairs.checks), _per_check(valid_log_probs, pairs.checks)
    # below MIN_GAP the model does not tell a check's twins apart: no head can carry a difference
    gaps = {c: high[c] - low[c] for c in high if abs(high[c] - low[c]) >= MIN_GAP}
    device = invalid_heads.device

    def necessity(*heads: int) -> dict[str, float]:
        noised = _per_check(
            invalid(valid_heads, heads_chosen(attention.n_heads, *heads, device=device))[0], pairs.checks
        )
        return {c: (high[c] - noised[c]) / gaps[c] if c in gaps else 0.0 for c in CHECKS}

    effects = []
    for head in range(attention.n_heads):
        denoised = _per_check(
            valid(invalid_heads, heads_chosen(attention.n_heads, head, device=device))[0], pairs.checks
        )
        effects.append((necessity(head), {c: (denoised[c] - low[c]) / gaps[c] if c in gaps else 0.0 for c in CHECKS}))
    together = {pair: necessity(*pair) for pair in itertools.combinations(range(attention.n_heads), 2)}
    return effects, together
