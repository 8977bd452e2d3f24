"""Which cross-attention head carries which reason, measured causally as interpretability research does
(Heimersheim & Nanda 2024, "How to use and interpret activation patching").

- Minimal pairs: for each reason (and each of ADMIN's checks) claims that are invalid for that reason alone, each
  beside its twin with the one field that breaks the rule repaired, so the twin is valid. Both are written alike.
- Activation patching of one head's output between the twins, scored by the logit difference
  log P(reason) - log P(VALID) and normalised by the gap between the twins: **necessity** puts the valid twin's
  head output into the invalid claim (how much of the reason goes when that head no longer sees the problem);
  **sufficiency** puts the invalid twin's into the valid claim (how much of the reason that head brings alone).
- Mean ablation over a class-balanced reference set (never zeroing, which feeds the model inputs it never saw,
  Li & Janson 2024), with where each class's answers went, so a fallback to MEDICAL shows instead of hiding as a
  VALID drop.

A head **owns** a reason when the reason depends on it (necessity >= OWNED), no other reason or ADMIN check does
(<= UNOWNED each), valid claims do not (mean-ablated, VALID accuracy drops by <= UNOWNED), and no other head
passes for the same reason. Otherwise the head owns nothing.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import torch

from data.catalog import Catalog, price_range
from data.generator import ADMIN_KINDS, Claim, generate_claims
from data.rules import ClaimFields, check_claim
from data.styles import terse
from data.tokenizer import Tokenizer, parse_claim
from engine.dataset import ClaimTensors, encode_claims
from engine.model import CLASSES, REASONS, Attention, ClaimsTransformer, greedy_outcomes

OWNED = 0.5  # a reason depends on a head: patching it away removes at least half the gap between the twins
UNOWNED = 0.2  # the most any other reason, check or VALID may depend on a head that owns one
MIN_GAP = 1e-6  # logit difference between twins below which a check is not measured
CHECKS = ("MEDICAL", "DOSAGE", "COST", *ADMIN_KINDS)  # what a minimal pair can differ in


def reason_of(check: str) -> str:
    return "ADMIN" if check in ADMIN_KINDS else check


@dataclass(frozen=True)
class MinimalPair:
    check: str  # MEDICAL, DOSAGE, COST or an ADMIN check (sex, age, specialty, place)
    invalid: Claim
    valid: Claim  # the same claim with the one broken field repaired


@dataclass(frozen=True)
class HeadAttribution:
    necessity: dict[str, float]  # per check (CHECKS)
    sufficiency: dict[str, float]
    answers: dict[str, dict[str, float]]  # mean-ablated: true class -> share of its claims answered as each class
    valid_drop: float  # VALID accuracy lost when the head is mean-ablated
    owns: str | None = None  # a reason (REASONS), or None

    def reason_necessity(self, reason: str) -> float:
        """ADMIN's four checks count as ADMIN by their mean."""
        checks = [c for c in CHECKS if reason_of(c) == reason]
        return sum(self.necessity[c] for c in checks) / len(checks)


def _candidates(check: str, fields: ClaimFields, catalog: Catalog) -> tuple[str, list]:
    """The field a check is about, and values it could take."""
    if check == "MEDICAL":
        return "diagnosis", list(catalog.diagnoses)
    if check == "DOSAGE":
        drug = catalog.drugs[fields.drug]
        return "dose_mg", [drug.dose_min_mg, drug.dose_label_max_mg]
    if check == "COST":
        low, high = price_range(catalog.drugs.get(fields.drug) or catalog.procedures[fields.procedure])
        return "amount_usd", [low, round((low * high) ** 0.5, 2), high]
    return check, {"sex": ["M", "F"], "age": list(range(1, 100)), "specialty": list(catalog.specialties),
                   "place": list(catalog.places)}[check]


def _repaired(check: str, fields: ClaimFields, catalog: Catalog, rng: random.Random) -> ClaimFields | None:
    name, values = _candidates(check, fields, catalog)
    rng.shuffle(values)
    for value in values:
        twin = replace(fields, **{name: value})
        if not check_claim(twin, catalog):
            return twin
    return None


def minimal_pairs(catalog: Catalog, tokenizer: Tokenizer, per_check: int = 40, seed: int = 0) -> list[MinimalPair]:
    """Up to `per_check` pairs per check, from generated invalid claims, both twins written as a terse list so
    that they differ in one field's words only, and both read back as the fields they were written from."""
    rng = random.Random(seed)
    pairs: list[MinimalPair] = []
    counts: Counter[str] = Counter()
    for claim in generate_claims(per_check * 40, seed, catalog):
        check = claim.admin_kind or claim.reason
        if claim.verdict == "VALID" or counts[check] >= per_check:
            continue
        fields = _repaired(check, claim.fields, catalog, rng)
        if fields is None:
            continue
        texts = terse(claim.fields, catalog, rng), terse(fields, catalog, rng)
        if any(parse_claim(tokenizer.encode(t), tokenizer) != f for t, f in zip(texts, (claim.fields, fields),
                                                                                 strict=True)):
            continue
        pairs.append(MinimalPair(check, replace(claim, text=texts[0]), Claim(texts[1], "VALID", "NONE", fields, None)))
        counts[check] += 1
    return pairs


@contextmanager
def _head_outputs(attention: Attention, seen: list[torch.Tensor], source: torch.Tensor | None = None,
                  head: int | None = None) -> Iterator[None]:
    """Records what one attention's heads hand its output projection (B, S, H * hd), and with `source` replaces
    one head's slice of it by source's (a hook: the model's code and weights are untouched)."""
    width = attention.head_dim

    def hook(_module: torch.nn.Module, args: tuple[torch.Tensor]) -> tuple[torch.Tensor] | None:
        seen.append(args[0].detach())
        if source is None:
            return None
        patched = args[0].clone()
        columns = slice(head * width, (head + 1) * width)
        patched[..., columns] = source.expand_as(patched)[..., columns]
        return (patched,)

    handle = attention.out.register_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def run_patched(model: ClaimsTransformer, claims: ClaimTensors, attention: Attention,
                source: torch.Tensor | None = None, head: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 5) outcome log-probs and the heads' outputs (B, S, C), with one head patched from `source`."""
    seen: list[torch.Tensor] = []
    with torch.no_grad(), _head_outputs(attention, seen, source, head):
        log_probs = model.class_log_probs(claims.tokens, claims.categories)
    return log_probs, seen[0]


def _logit_difference(log_probs: torch.Tensor, reason: str) -> float:
    return float((log_probs[:, CLASSES.index(reason)] - log_probs[:, 0]).mean())


def _patching(model: ClaimsTransformer, attention: Attention, invalid: ClaimTensors, valid: ClaimTensors,
              reason: str) -> tuple[list[float], list[float]]:
    """Per head: (necessity, sufficiency) on one check's pairs."""
    invalid_log_probs, invalid_heads = run_patched(model, invalid, attention)
    valid_log_probs, valid_heads = run_patched(model, valid, attention)
    high, low = _logit_difference(invalid_log_probs, reason), _logit_difference(valid_log_probs, reason)
    gap = high - low
    if abs(gap) < MIN_GAP:  # the model does not tell these twins apart: no head can carry a difference
        return [0.0] * attention.n_heads, [0.0] * attention.n_heads
    necessity, sufficiency = [], []
    for head in range(attention.n_heads):
        noised = _logit_difference(run_patched(model, invalid, attention, valid_heads, head)[0], reason)
        denoised = _logit_difference(run_patched(model, valid, attention, invalid_heads, head)[0], reason)
        necessity.append((high - noised) / gap)
        sufficiency.append((denoised - low) / gap)
    return necessity, sufficiency


def balanced(claims: ClaimTensors, per_class: int) -> ClaimTensors:
    """Up to `per_class` claims of each class, so that no class dominates a mean."""
    chosen = [torch.nonzero(claims.classes == c).squeeze(1)[:per_class] for c in range(len(CLASSES))]
    return claims.subset(torch.cat(chosen))


def _answers(model: ClaimsTransformer, attention: Attention, mean: torch.Tensor, claims: ClaimTensors,
             head: int) -> dict[str, dict[str, float]]:
    predicted = greedy_outcomes(run_patched(model, claims, attention, mean, head)[0])
    answers = {}
    for index, true in enumerate(CLASSES):
        given = predicted[claims.classes == index]
        answers[true] = {c: float((given == i).float().mean()) if len(given) else 0.0 for i, c in enumerate(CLASSES)}
    return answers


def attribute(model: ClaimsTransformer, pairs: list[MinimalPair], claims: ClaimTensors, tokenizer: Tokenizer,
              name: str) -> tuple[HeadAttribution, ...]:
    """Every head of the cross-attention `name`: patching effects on `pairs`, and where the answers of the
    held-out `claims` go when it is mean-ablated over a class-balanced reference taken from them."""
    was_training = model.training
    model.eval()
    attention = next(layer.cross_attention for layer in model.decoder if layer.cross_attention.name == name)
    max_len = model.config.max_len
    effects = {}
    for check in CHECKS:
        chosen = [p for p in pairs if p.check == check]
        if chosen:
            invalid = encode_claims([p.invalid for p in chosen], tokenizer, max_len)
            valid = encode_claims([p.valid for p in chosen], tokenizer, max_len)
            effects[check] = _patching(model, attention, invalid, valid, reason_of(check))
    heads = []
    base = greedy_outcomes(run_patched(model, claims, attention)[0])
    valid_accuracy = float((base[claims.classes == 0] == 0).float().mean())
    reference = balanced(claims, len(claims) // len(CLASSES))
    mean = run_patched(model, reference, attention)[1].mean(0, keepdim=True)  # (1, S, C)
    for head in range(attention.n_heads):
        answers = _answers(model, attention, mean, claims, head)
        heads.append(HeadAttribution(
            necessity={c: effects[c][0][head] if c in effects else 0.0 for c in CHECKS},
            sufficiency={c: effects[c][1][head] if c in effects else 0.0 for c in CHECKS},
            answers=answers, valid_drop=valid_accuracy - answers["VALID"]["VALID"],
        ))
    model.train(was_training)
    return owners(heads)


def owners(heads: list[HeadAttribution]) -> tuple[HeadAttribution, ...]:
    """The heads with `owns` set by the rule in the module's docstring."""
    def candidate(head: HeadAttribution) -> str | None:
        strong = [r for r in REASONS if head.reason_necessity(r) >= OWNED]
        if len(strong) != 1 or head.valid_drop > UNOWNED:
            return None
        others = [c for c in CHECKS if reason_of(c) != strong[0]]
        return strong[0] if all(head.necessity[c] <= UNOWNED for c in others) else None

    claims = [candidate(h) for h in heads]
    return tuple(replace(h, owns=r if r is not None and claims.count(r) == 1 else None)
                 for h, r in zip(heads, claims, strict=True))
