"""What each head looks at and what it is for: attention capture on the probe batch, and per-head
specialization (category shares, entropy, confidence, importance, and engine.interpret.attribution's causal measurement)
on held-out claims."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import asdict

import torch

from data.vocabulary import CATEGORIES
from engine.interpret.attribution import attribute
from engine.interpret.metrics import NOTHING, attention_confidence, attention_entropy, category_shares
from engine.interpret.ownership import owners
from engine.interpret.pairs import PairBatch
from engine.task.claims_model import REASON_POSITION, ClaimsTransformer
from engine.task.dataset import ClaimTensors
from engine.telemetry import AttentionPoint, HeadSpecialization, SpecializationPoint

# Held-out claims scored for specialization: about +-0.05 per reason, cheap enough to run often.
ANALYSIS_CLAIMS = 600


@torch.no_grad()
def capture_probe(model: ClaimsTransformer, probe: ClaimTensors, step: int) -> AttentionPoint:
    was_training = model.training
    model.eval()
    capture: dict[str, torch.Tensor] = {}
    model.class_log_probs(probe.tokens, probe.categories, capture=capture)
    model.train(was_training)
    return AttentionPoint(step, {name: w.float().cpu().numpy() for name, w in capture.items()})


def query_rows(name: str, weights: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
    """(N, H, Tk) rows that say what a head reads: the reason position for cross-attention, the mean over real
    query tokens for encoder self-attention (the two kinds `analysed_names` measures)."""
    if name.endswith(".cross"):
        return weights[:, :, REASON_POSITION, :]
    query_weight = pad_mask.float()[:, None, :, None]  # (N, 1, T, 1)
    return (weights * query_weight).sum(2) / query_weight.sum(2).clamp_min(1)


def analysed_names(model: ClaimsTransformer, include_encoder: bool = True) -> list[str]:
    """Heads whose specialization is measured: cross-attention (how the reason position reads the claim) and,
    optionally, encoder self-attention (costlier to ablate: each needs a full forward pass)."""
    names = model.attention_names()
    return [n for n in names if n.endswith(".cross") or (include_encoder and n.startswith("encoder."))]


class _Scorer:
    """Outcome log-probs of the claims, re-running the encoder only when it must (a hook sits inside it)."""

    def __init__(self, model: ClaimsTransformer, claims: ClaimTensors) -> None:
        self.model, self.claims = model, claims
        self.pad_mask = claims.tokens != 0
        self.capture: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            self.memory = model.with_keys_values(model.encode(claims.tokens, claims.categories, self.capture))
            model.outcome_log_probs(self.memory, self.capture)  # for the cross-attention weights it captures

    def log_probs(self, in_encoder: bool) -> torch.Tensor:
        if in_encoder:
            return self.model.class_log_probs(self.claims.tokens, self.claims.categories)
        return self.model.outcome_log_probs(self.memory)


def head_importance(scorer: _Scorer, names: list[str]) -> dict[str, torch.Tensor]:
    """|dL/dg| per head at g = 1, g scaling the head's output at its HeadPoint (Michel et al. 2019), L = NLL of the
    true outcome."""
    attentions = {name: scorer.model.attention_named(name) for name in names}
    result = {}
    for group in ([n for n in names if n.startswith("encoder.")], [n for n in names if not n.startswith("encoder.")]):
        if not group:
            continue
        scales = {
            name: torch.ones(attentions[name].n_heads, requires_grad=True, device=scorer.claims.tokens.device)
            for name in group
        }
        with ExitStack() as hooks:
            for name in group:
                hooks.enter_context(
                    attentions[name].heads.hooked(lambda heads, scale=scales[name]: heads * scale.view(1, -1, 1, 1))
                )
            log_probs = scorer.log_probs(in_encoder=group[0].startswith("encoder."))
        loss = -log_probs.gather(1, scorer.claims.classes[:, None]).mean()
        grads = torch.autograd.grad(loss, [scales[n] for n in group])
        result.update({name: grad.abs().detach() for name, grad in zip(group, grads, strict=True)})
    return result


def specialization(
    model: ClaimsTransformer,
    heldout: ClaimTensors,
    step: int,
    n_categories: int,
    pairs: PairBatch | None,
    reference: ClaimTensors,
    analysis_claims: int = ANALYSIS_CLAIMS,
    include_encoder: bool = False,
) -> SpecializationPoint:
    """Every measured head at `step`: what it reads (shares, entropy, confidence, importance) and what it is for
    (engine.interpret.attribution: patching on `pairs`, resampling from the `reference` claims on the held-out
    claims)."""
    was_training = model.training
    model.eval()
    names = analysed_names(model, include_encoder)
    scorer = _Scorer(model, heldout.subset(slice(0, analysis_claims)))
    importance = head_importance(scorer, names)
    claims = scorer.claims
    heads: dict[str, tuple[HeadSpecialization, ...]] = {}
    for name in names:
        rows = query_rows(name, scorer.capture[name], scorer.pad_mask)  # (N, H, Tk)
        shares = category_shares(rows, claims.categories, n_categories)  # (H, C)
        entropy, confidence = attention_entropy(rows), attention_confidence(rows)
        per_head = []
        for head, causal in enumerate(owners(attribute(model, name, claims, pairs, reference, scorer.memory))):
            head_shares = {CATEGORIES[c]: float(shares[head, c]) for c in range(n_categories)}
            if model.config.null_key:
                head_shares[NOTHING] = max(0.0, 1.0 - sum(head_shares.values()))
            per_head.append(
                HeadSpecialization(
                    shares=head_shares,
                    entropy=float(entropy[head]),
                    confidence=float(confidence[head]),
                    importance=float(importance[name][head]),
                    **asdict(causal),
                )
            )
        heads[name] = tuple(per_head)
    model.train(was_training)
    return SpecializationPoint(step, heads)
