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

What the measurements make of each head (specialist, leans, ...): engine.ownership.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import torch

from data.catalog import Catalog, load_catalog, price_range
from data.generator import ADMIN_KINDS, Claim, generate_claims
from data.rules import ClaimFields, check_claim
from data.styles import terse
from data.tokenizer import Tokenizer
from data.vocabulary import parse_claim
from engine.dataset import ClaimTensors, encode_claims
from engine.metrics import admin_kind_accuracy, per_class_accuracy
from engine.model import CLASSES, REASONS, TARGET_ID, Attention, ClaimsTransformer, greedy_outcomes

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
class PairBatch:
    """Every minimal pair as two aligned batches, row i of one the twin of row i of the other."""

    invalid: ClaimTensors
    valid: ClaimTensors
    checks: tuple[str, ...]  # row -> the check its pair tests


@dataclass(frozen=True)
class HeadAttribution:
    necessity: dict[str, float]  # per check (CHECKS); empty where the head is not patched (encoder heads)
    sufficiency: dict[str, float]
    answers: dict[str, dict[str, float]]  # mean-ablated: true class -> share of its claims answered as each class
    ablation: dict[str, float]  # mean-ablated: class -> accuracy drop
    admin_kinds: dict[str, float]  # mean-ablated: ADMIN check -> accuracy drop on ADMIN claims of that kind
    direct: dict[str, float] = field(default_factory=dict)  # per check: direct logit attribution (direct_effects)
    owns: str | None = None  # a reason (REASONS), or None
    label: str = ""
    evidence: str = ""
    kind: str = ""  # one of the kinds in engine.ownership
    reason: str | None = None  # the reason or check the label names

    @property
    def valid_drop(self) -> float:
        return self.ablation.get("VALID", 0.0)

    def reason_necessity(self, reason: str) -> float:
        """ADMIN's four checks count as ADMIN by their mean."""
        checks = [c for c in CHECKS if reason_of(c) == reason]
        return sum(self.necessity.get(c, 0.0) for c in checks) / len(checks)


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
        if any(parse_claim(tokenizer.encode(t)) != f for t, f in zip(texts, (claim.fields, fields),
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


def pair_batch(pairs: list[MinimalPair], tokenizer: Tokenizer, max_len: int,
               device: torch.device | str = "cpu") -> PairBatch:
    return PairBatch(encode_claims([p.invalid for p in pairs], tokenizer, max_len).to(device),
                     encode_claims([p.valid for p in pairs], tokenizer, max_len).to(device),
                     tuple(p.check for p in pairs))


_RUN_PAIRS: dict[tuple, PairBatch] = {}  # made once per tokenizer: 0.25 s a run start otherwise
RUN_PAIRS_KEPT = 8


def run_pairs(tokenizer: Tokenizer, max_len: int, device: torch.device | str = "cpu") -> PairBatch:
    """The minimal pairs every measurement of every run is taken on, in training and by `engine analyze` alike."""
    key = (tokenizer.vocab, tuple(sorted(tokenizer.aliases.items())), max_len, str(device))
    if key not in _RUN_PAIRS:
        while len(_RUN_PAIRS) >= RUN_PAIRS_KEPT:
            _RUN_PAIRS.pop(next(iter(_RUN_PAIRS)))
        _RUN_PAIRS[key] = pair_batch(minimal_pairs(load_catalog(), tokenizer), tokenizer, max_len, device)
    return _RUN_PAIRS[key]


Run = Callable[[torch.Tensor | None, int | None], tuple[torch.Tensor, torch.Tensor]]


def patched_runner(model: ClaimsTransformer, claims: ClaimTensors, attention: Attention) -> Run:
    """run(source, head) -> (B, 5) outcome log-probs and what the heads handed the output projection, with `head`'s
    slice replaced by `source`'s (none replaced when source is None). A cross-attention's claims are encoded
    once: patching it changes only the decoder's passes."""
    if attention.name.startswith("encoder."):
        def forward() -> torch.Tensor:
            return model.class_log_probs(claims.tokens, claims.categories)
    else:
        with torch.no_grad():
            memory = model.with_keys_values(model.encode(claims.tokens, claims.categories))

        def forward() -> torch.Tensor:
            return model.outcome_log_probs(memory)

    def run(source: torch.Tensor | None = None, head: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        seen: list[torch.Tensor] = []
        with torch.no_grad(), _head_outputs(attention, seen, source, head):
            log_probs = forward()
        return log_probs, seen[0]

    return run


def _rows_by_check(checks: tuple[str, ...]) -> dict[str, list[int]]:
    """check -> the rows of a pair batch that test it, in the order checks first appear."""
    return {c: [i for i, row in enumerate(checks) if row == c] for c in dict.fromkeys(checks)}


def _per_check(log_probs: torch.Tensor, checks: tuple[str, ...]) -> dict[str, float]:
    """Mean logit difference log P(reason) - log P(VALID) over each check's rows, the reason being the check's."""
    reasons = torch.tensor([CLASSES.index(reason_of(c)) for c in checks], device=log_probs.device)
    differences = log_probs.gather(1, reasons[:, None]).squeeze(1) - log_probs[:, 0]  # (B,)
    return {c: float(differences[index].mean()) for c, index in _rows_by_check(checks).items()}


def _patching(model: ClaimsTransformer, attention: Attention,
              pairs: PairBatch) -> list[tuple[dict[str, float], dict[str, float]]]:
    """Per head: (necessity, sufficiency) per check."""
    invalid, valid = patched_runner(model, pairs.invalid, attention), patched_runner(model, pairs.valid, attention)
    (invalid_log_probs, invalid_heads), (valid_log_probs, valid_heads) = invalid(), valid()
    high, low = _per_check(invalid_log_probs, pairs.checks), _per_check(valid_log_probs, pairs.checks)
    # below MIN_GAP the model does not tell a check's twins apart: no head can carry a difference
    gaps = {c: high[c] - low[c] for c in high if abs(high[c] - low[c]) >= MIN_GAP}
    effects = []
    for head in range(attention.n_heads):
        noised = _per_check(invalid(valid_heads, head)[0], pairs.checks)
        denoised = _per_check(valid(invalid_heads, head)[0], pairs.checks)
        effects.append(({c: (high[c] - noised[c]) / gaps[c] if c in gaps else 0.0 for c in CHECKS},
                        {c: (denoised[c] - low[c]) / gaps[c] if c in gaps else 0.0 for c in CHECKS}))
    return effects


def logit_directions(model: ClaimsTransformer, reasons: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C) each: directions in the final residual whose dot product (after the final LayerNorm) is the logit
    difference the answer rests on: at the verdict position INVALID minus VALID, at the reason position the claim's
    reason (`reasons`, indices into REASONS) minus the mean of the other reasons."""
    unembed = model.output.weight  # (V, C)
    verdict = unembed[TARGET_ID["INVALID"]] - unembed[TARGET_ID["VALID"]]  # (C,)
    rows = unembed[[TARGET_ID[r] for r in REASONS]]  # (4, C)
    chosen = rows[reasons]  # (B, C)
    return verdict.expand_as(chosen), chosen - (rows.sum(0) - chosen) / (len(REASONS) - 1)


def direct_effects(model: ClaimsTransformer, attention: Attention, claims: ClaimTensors,
                   reasons: torch.Tensor) -> torch.Tensor:
    """(B, H) direct logit attribution: each head's output, through the output projection and the final LayerNorm
    with its scale frozen as measured, read along `logit_directions` at both answer positions and summed. The
    residual stream is a sum, so with the LayerNorm frozen these add up exactly with every other component's."""
    run = patched_runner(model, claims, attention)
    final: list[torch.Tensor] = []
    handle = model.norm_out.register_forward_pre_hook(lambda _m, args: final.append(args[0].detach()))
    try:
        _, heads = run()
    finally:
        handle.remove()
    residual = final[0]  # (B, S, C)
    sigma = (residual.var(-1, unbiased=False, keepdim=True) + model.norm_out.eps).sqrt()  # (B, S, 1)
    batch, length, _ = heads.shape
    width = attention.head_dim
    out = attention.out.weight.view(-1, attention.n_heads, width)  # (C, H, hd)
    written = torch.einsum("bshd,chd->bshc", heads.view(batch, length, attention.n_heads, width), out)
    centered = written - written.mean(-1, keepdim=True)  # the LayerNorm subtracts each row's mean
    read = centered / sigma[:, :, None, :] * model.norm_out.weight  # (B, S, H, C)
    verdict, reason = logit_directions(model, reasons)
    return (read[:, 0] * verdict[:, None]).sum(-1) + (read[:, 1] * reason[:, None]).sum(-1)


def _direct(model: ClaimsTransformer, attention: Attention, pairs: PairBatch) -> list[dict[str, float]]:
    """Per head: mean direct logit attribution on each check's invalid twins."""
    reasons = torch.tensor([REASONS.index(reason_of(c)) for c in pairs.checks], device=pairs.invalid.tokens.device)
    with torch.no_grad():
        effects = direct_effects(model, attention, pairs.invalid, reasons)  # (B, H)
    rows = _rows_by_check(pairs.checks)
    return [{c: float(effects[index, head].mean()) for c, index in rows.items()} for head in range(attention.n_heads)]


def balanced(claims: ClaimTensors, per_class: int) -> ClaimTensors:
    """Up to `per_class` claims of each class, so that no class dominates a mean."""
    chosen = [torch.nonzero(claims.classes == c).squeeze(1)[:per_class] for c in range(len(CLASSES))]
    return claims.subset(torch.cat(chosen))


def _accuracies(predicted: torch.Tensor, claims: ClaimTensors) -> dict[str, float]:
    """Accuracy per class, then per ADMIN check where the claims' kinds are known."""
    _, per_class = per_class_accuracy(predicted, claims.classes)
    kinds = {} if claims.admin_kinds is None else admin_kind_accuracy(predicted, claims.classes, claims.admin_kinds)
    return per_class | kinds


def _answers(predicted: torch.Tensor, claims: ClaimTensors) -> dict[str, dict[str, float]]:
    answers = {}
    for index, true in enumerate(CLASSES):
        given = predicted[claims.classes == index]
        answers[true] = {c: float((given == i).float().mean()) if len(given) else 0.0 for i, c in enumerate(CLASSES)}
    return answers


def _mean_ablations(model: ClaimsTransformer, attention: Attention,
                    claims: ClaimTensors) -> list[tuple[dict[str, dict[str, float]], dict[str, float]]]:
    """Per head, mean-ablated over a class-balanced reference from `claims`: where each class's answers go, and the
    accuracy lost per class and per ADMIN check."""
    run = patched_runner(model, claims, attention)
    base_log_probs, outputs = run()
    base = _accuracies(greedy_outcomes(base_log_probs), claims)
    reference = balanced(claims, len(claims) // len(CLASSES))
    reference_outputs = patched_runner(model, reference, attention)()[1] if len(reference) < len(claims) else outputs
    mean = reference_outputs.mean(0, keepdim=True)  # (1, S, C) per answer position; (1, C) over an encoder's tokens
    results = []
    for head in range(attention.n_heads):
        predicted = greedy_outcomes(run(mean, head)[0])
        ablated = _accuracies(predicted, claims)
        results.append((_answers(predicted, claims), {k: base[k] - ablated[k] for k in base}))
    return results


def attribute(model: ClaimsTransformer, name: str, claims: ClaimTensors,
              pairs: PairBatch | None) -> tuple[HeadAttribution, ...]:
    """Every head of the attention `name`: patching effects on `pairs` (cross-attention only: an encoder head's
    output sits at the claim's own words, which twins do not share), and where the answers of the held-out
    `claims` go when it is mean-ablated; not yet labelled (engine.ownership.owners)."""
    was_training = model.training
    model.eval()
    attention = next(m for m in model.modules() if isinstance(m, Attention) and m.name == name)
    patched = pairs is not None and not name.startswith("encoder.")
    effects = _patching(model, attention, pairs) if patched else None
    direct = _direct(model, attention, pairs) if patched else None
    heads = []
    for head, (answers, drops) in enumerate(_mean_ablations(model, attention, claims)):
        necessity, sufficiency = effects[head] if effects else ({}, {})
        heads.append(HeadAttribution(necessity, sufficiency, answers, {c: drops[c] for c in CLASSES},
                                     {k: drops[k] for k in ADMIN_KINDS if k in drops}, direct[head] if direct else {}))
    model.train(was_training)
    return tuple(heads)
