"""What each head looks at and what it is for: attention capture on the probe batch, and per-head
specialization (category shares, entropy, confidence, importance, ablation) on held-out claims."""

from __future__ import annotations

import torch
from data.tokenizer import CATEGORIES

from engine.dataset import ClaimTensors
from engine.metrics import attention_confidence, attention_entropy, category_shares, head_label, per_class_accuracy
from engine.model import CLASSES, REASON_POSITION, ClaimsTransformer, ones_gates
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
    query tokens for encoder self-attention."""
    if name.endswith(".cross"):
        return weights[:, :, REASON_POSITION, :]
    if name.startswith("encoder."):
        query_weight = pad_mask.float()[:, None, :, None]  # (N, 1, T, 1)
        return (weights * query_weight).sum(2) / query_weight.sum(2).clamp_min(1)
    return weights[:, :, -1, :]


def analysed_names(model: ClaimsTransformer) -> list[str]:
    return [n for n in model.attention_names() if n.endswith(".cross") or n.startswith("encoder.")]


def _predict(model: ClaimsTransformer, claims: ClaimTensors, gates: dict | None = None) -> torch.Tensor:
    return model.class_log_probs(claims.tokens, claims.categories, gates=gates).argmax(dim=-1)


def head_importance(model: ClaimsTransformer, claims: ClaimTensors, names: list[str]) -> dict[str, torch.Tensor]:
    """|dL/d gate| per head at gate = 1 (Michel et al. 2019), L = NLL of the true outcome."""
    gates = ones_gates(model, names, requires_grad=True)
    log_probs = model.class_log_probs(claims.tokens, claims.categories, gates=gates)
    loss = -log_probs.gather(1, claims.classes[:, None]).mean()
    grads = torch.autograd.grad(loss, [gates[n] for n in names])
    return {name: grad.abs().detach() for name, grad in zip(names, grads, strict=True)}


def ablation_drops(model: ClaimsTransformer, claims: ClaimTensors, names: list[str]) -> dict[str, list[dict]]:
    """Per head: accuracy drop for each true class when that head's output is zeroed."""
    with torch.no_grad():
        _, base = per_class_accuracy(_predict(model, claims), claims.classes)
        drops: dict[str, list[dict]] = {}
        for name in names:
            drops[name] = []
            for head in range(model.config.n_heads):
                gates = ones_gates(model, [name])
                gates[name][head] = 0.0
                _, ablated = per_class_accuracy(_predict(model, claims, gates), claims.classes)
                drops[name].append({c: base[c] - ablated[c] for c in CLASSES})
    return drops


def specialization(model: ClaimsTransformer, heldout: ClaimTensors, step: int, n_categories: int,
                   analysis_claims: int = ANALYSIS_CLAIMS) -> SpecializationPoint:
    was_training = model.training
    model.eval()
    claims = heldout.subset(slice(0, analysis_claims))
    names = analysed_names(model)
    capture: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        model.class_log_probs(claims.tokens, claims.categories, capture=capture)
    importance = head_importance(model, claims, names)
    drops = ablation_drops(model, claims, names)
    model.train(was_training)
    heads: dict[str, tuple[HeadSpecialization, ...]] = {}
    for name in names:
        rows = query_rows(name, capture[name], claims.tokens != 0)  # (N, H, Tk)
        shares = category_shares(rows, claims.categories, n_categories)  # (H, C)
        entropy, confidence = attention_entropy(rows), attention_confidence(rows)
        per_head = []
        for head in range(model.config.n_heads):
            label, evidence = head_label(drops[name][head])
            per_head.append(HeadSpecialization(
                shares={CATEGORIES[c]: float(shares[head, c]) for c in range(n_categories)},
                entropy=float(entropy[head]), confidence=float(confidence[head]),
                importance=float(importance[name][head]), ablation=drops[name][head], label=label, evidence=evidence,
            ))
        heads[name] = tuple(per_head)
    return SpecializationPoint(step, heads)
