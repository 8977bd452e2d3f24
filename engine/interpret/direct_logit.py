"""Direct logit attribution (direct_effects): what each head writes straight into the answer's logits, read along the
logit differences the answer rests on, per check on the invalid twins of the minimal pairs. Unlike patching
(engine.interpret.patching) it counts only a head's own path to the output, not what later layers make of it.
"""

from __future__ import annotations

import torch

from data.rules import REASONS
from engine.interpret.pairs import PairBatch, reason_of
from engine.interpret.patching import patched_runner, rows_by_check
from engine.model.transformer import Attention, Memory
from engine.task.claims_model import TARGET_ID, ClaimsTransformer
from engine.task.dataset import ClaimTensors


def logit_directions(model: ClaimsTransformer, reasons: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C) each: directions in the final residual whose dot product (after the final LayerNorm) is the logit
    difference the answer rests on: at the verdict position INVALID minus VALID, at the reason position the claim's
    reason (`reasons`, indices into REASONS) minus the mean of the other reasons."""
    unembed = model.output.weight  # (V, C)
    verdict = unembed[TARGET_ID["INVALID"]] - unembed[TARGET_ID["VALID"]]  # (C,)
    rows = unembed[[TARGET_ID[r] for r in REASONS]]  # (4, C)
    chosen = rows[reasons]  # (B, C)
    return verdict.expand_as(chosen), chosen - (rows.sum(0) - chosen) / (len(REASONS) - 1)


def direct_effects(
    model: ClaimsTransformer,
    attention: Attention,
    claims: ClaimTensors,
    reasons: torch.Tensor,
    memory: Memory | None = None,
) -> torch.Tensor:
    """(B, H) direct logit attribution: each head's output, through the output projection and the final LayerNorm
    with its scale frozen as measured, read along `logit_directions` at both answer positions and summed. The
    residual stream is a sum, so with the LayerNorm frozen these add up exactly with every other component's."""
    run = patched_runner(model, claims, attention, memory=memory)
    final: list[torch.Tensor] = []
    handle = model.norm_out.register_forward_pre_hook(lambda _m, args: final.append(args[0].detach()))
    try:
        _, heads = run()  # (B, H, S, hd)
    finally:
        handle.remove()
    residual = final[0]  # (B, S, C)
    sigma = (residual.var(-1, unbiased=False, keepdim=True) + model.norm_out.eps).sqrt()  # (B, S, 1)
    out = attention.out.weight.view(-1, attention.n_heads, attention.value_dim)  # (C, H, hd)
    written = torch.einsum("bhsd,chd->bshc", heads, out)
    centered = written - written.mean(-1, keepdim=True)  # the LayerNorm subtracts each row's mean
    read = centered / sigma[:, :, None, :] * model.norm_out.weight  # (B, S, H, C)
    verdict, reason = logit_directions(model, reasons)
    return (read[:, 0] * verdict[:, None]).sum(-1) + (read[:, 1] * reason[:, None]).sum(-1)


def direct_per_check(
    model: ClaimsTransformer, attention: Attention, pairs: PairBatch, memory: Memory
) -> list[dict[str, float]]:
    """Per head: mean direct logit attribution on each check's invalid twins (`memory`: them encoded)."""
    reasons = torch.tensor([REASONS.index(reason_of(c)) for c in pairs.checks], device=pairs.invalid.tokens.device)
    with torch.no_grad():
        effects = direct_effects(model, attention, pairs.invalid, reasons, memory)  # (B, H)
    rows = rows_by_check(pairs.checks)
    return [{c: float(effects[index, head].mean()) for c, index in rows.items()} for head in range(attention.n_heads)]
