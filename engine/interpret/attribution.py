"""Which cross-attention head carries which reason, measured causally as interpretability research does
(Heimersheim & Nanda 2024, "How to use and interpret activation patching").

- Minimal pairs: for each reason (and each of ADMIN's checks) claims that are invalid for that reason alone, each
  beside its twin with the one field that breaks the rule repaired, so the twin is valid. Both are written alike.
- Activation patching of one head's output between the twins (engine.interpret.patching), scored by the logit
  difference log P(reason) - log P(VALID) and normalised by the gap between the twins: **necessity** puts the valid
  twin's head output into the invalid claim (how much of the reason goes when that head no longer sees the problem);
  **sufficiency** puts the invalid twin's into the valid claim (how much of the reason that head brings alone).
- Resample ablation: "without this head" means one thing everywhere, on every page: the head sees what it saw on
  other claims of the same class (a fixed set of generated reference claims, RESAMPLES per class), never zeros or an
  average, which feed the model inputs it never saw (Chan et al. 2022, causal scrubbing; Li & Janson 2024;
  Heimersheim & Nanda 2024). The accuracy lost per class, and where each class's answers went, so a fallback to
  MEDICAL shows instead of hiding as a VALID drop.
- Redundancy: both kinds of removal also take heads away in pairs, since two heads that can each stand in for the
  other (a backup) look unneeded one at a time.
- Direct logit attribution on the invalid twins (engine.interpret.direct_logit).

This module defines resample ablation and gathers every measurement of a head (`attribute`); every read and
replacement of a head goes through engine.interpret.patching's runner, at its attention's HeadPoint
(engine.model.transformer). What the measurements make of each head (specialist, leans, ...):
engine.interpret.ownership.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from data.catalog import load_catalog
from data.generator import ADMIN_KINDS, generate_claims
from data.rules import CLASSES, REASONS
from data.tokenizer import Tokenizer
from data.vocabulary import CATEGORIES
from engine.cache import Cache
from engine.interpret.direct_logit import direct_per_check
from engine.interpret.metrics import admin_kind_accuracy, per_class_accuracy
from engine.interpret.pairs import CHECKS, PairBatch, claims_reading, reason_of
from engine.interpret.patching import Run, encoded, heads_chosen, memory_rows, patch_twins, patched_runner
from engine.model.transformer import Attention, Memory
from engine.task.claims_model import ClaimsTransformer, greedy_outcomes
from engine.task.dataset import ClaimTensors, encode_claims
from engine.telemetry import RESAMPLED


@dataclass(frozen=True)
class HeadAttribution:
    necessity: dict[str, float]  # per check (CHECKS); empty where the head is not patched (encoder heads)
    sufficiency: dict[str, float]
    answers: dict[str, dict[str, float]]  # resampled: true class -> share of its claims answered as each class
    ablation: dict[str, float]  # resampled: class -> accuracy drop
    admin_kinds: dict[str, float]  # resampled: ADMIN check -> accuracy drop on ADMIN claims of that kind
    direct: dict[str, float] = field(default_factory=dict)  # per check: direct logit attribution (direct_logit.py)
    # with each other head of its attention (its index, as text): the necessity per check of the two patched
    # together, and the accuracy drop per class of the two resampled together; empty for encoder heads
    pair_necessity: dict[str, dict[str, float]] = field(default_factory=dict)
    pair_ablation: dict[str, dict[str, float]] = field(default_factory=dict)
    owns: str | None = None  # a reason (REASONS), or None
    kind: str = ""  # one of the kinds in engine.interpret.ownership (engine.interpret.labels words it)
    reason: str | None = None  # the reason, ADMIN family or checks the kind names (for NEEDED: the classes)
    rivals: tuple[int, ...] = ()  # the other heads that pass the specialist test for the same reason
    selectivity: float | None = None  # engine.interpret.ownership.selectivity; None where the head is not patched
    shared_with: dict[str, tuple[int, ...]] = field(default_factory=dict)  # reason or family -> heads it shares it
    intervention: str = RESAMPLED  # how `ablation` and `answers` took the head away (engine.telemetry.INTERVENTIONS)

    @property
    def valid_drop(self) -> float:
        return self.ablation.get("VALID", 0.0)

    def reason_necessity(self, reason: str) -> float:
        """ADMIN's four checks count as ADMIN by their mean."""
        checks = [c for c in CHECKS if reason_of(c) == reason]
        return sum(self.necessity.get(c, 0.0) for c in checks) / len(checks)


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


RESAMPLES = 4  # reference claims per class whose head outputs stand in for a head's own
PASS_ROWS = 2400  # claims (copies) per model pass when resampling: larger passes are no faster per claim
REFERENCE_SEED = 424_242  # the reference claims: generated apart from any run's training and held-out claims
_REFERENCES: Cache[ClaimTensors] = Cache(
    "reference claims", max_entries=8, key=("vocabulary", "aliases", "max_len", "device")
)


def reference_claims(tokenizer: Tokenizer, max_len: int, device: torch.device | str = "cpu") -> ClaimTensors:
    """RESAMPLES generated claims of each class, class c in rows c * RESAMPLES to (c + 1) * RESAMPLES - 1: the same
    for every measurement of every run (made once per tokenizer), so a head resampled on Inspect and on the
    Specialization page sees the same stand-ins."""

    def make() -> ClaimTensors:
        claims = encode_claims(generate_claims(RESAMPLES * 40, REFERENCE_SEED, load_catalog()), tokenizer, max_len)
        chosen = [_first_of_class(claims, c) for c in range(len(CLASSES))]
        assert all(len(rows) == RESAMPLES for rows in chosen), "too few reference claims of some class"
        return claims.subset(torch.tensor([r for rows in chosen for r in rows])).trimmed().to(device)

    return _REFERENCES.get(make, **claims_reading(tokenizer), max_len=max_len, device=str(device))


def _first_of_class(claims: ClaimTensors, index: int) -> list[int]:
    """The first RESAMPLES claims of a class; of ADMIN, one of each check before a second of any, since ADMIN is
    four different checks."""
    rows = torch.nonzero(claims.classes == index).squeeze(1).tolist()
    if CLASSES[index] == "ADMIN":
        kinds = [[r for r in rows if claims.admin_kinds[r] == k] for k in range(len(ADMIN_KINDS))]
        rows = [r for turn in itertools.zip_longest(*kinds) for r in turn if r is not None]
    return rows[:RESAMPLES]


def _field_means(heads: torch.Tensor, categories: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(R, H, n_categories, hd) each reference claim's head outputs averaged over its words of each field, or over
    all its words for a field it does not have. heads: (R, H, T, hd) at the claim's words."""
    fields = torch.nn.functional.one_hot(categories, len(CATEGORIES)).float() * mask[..., None]  # (R, T, F)
    counts = fields.sum(1)  # (R, F)
    per_field = torch.einsum("rtf,rhtd->rhfd", fields, heads) / counts.clamp_min(1)[:, None, :, None]
    words = mask.float()[:, None, :, None]
    overall = (heads * words).sum(2, keepdim=True) / words.sum(2, keepdim=True).clamp_min(1)  # (R, H, 1, hd)
    return torch.where(counts[:, None, :, None] > 0, per_field, overall)


def _stand_ins(
    attention: Attention,
    reference: ClaimTensors,
    reference_heads: torch.Tensor,
    categories: torch.Tensor,
    rows: torch.Tensor,
) -> torch.Tensor:
    """What each claim's heads get instead of their own, from reference claim `rows[b]` (B,): its outputs at the
    answer's positions (cross-attention); for an encoder head, at each word of the claim, the reference claim's
    outputs at its words of the same field (their mean; all its words' when it lacks that field), since the words
    of two claims stand in different places."""
    if not attention.name.startswith("encoder."):
        return reference_heads[rows]  # (B, H, S, hd)
    means = _field_means(reference_heads, reference.categories, reference.tokens != 0)[rows]  # (B, H, F, hd)
    index = categories[:, None, :, None].expand(-1, means.shape[1], -1, means.shape[3])  # (B, H, T, hd)
    return means.gather(2, index)


def resampled_log_probs(
    model: ClaimsTransformer,
    attention: Attention,
    claims: ClaimTensors,
    classes: torch.Tensor,
    head_sets: Sequence[tuple[int, ...]],
    reference: ClaimTensors,
    memory: Memory | None = None,
) -> list[torch.Tensor]:
    """ "Without these heads", the one way every page means it (resample ablation: Chan et al. 2022; Heimersheim &
    Nanda 2024): for each set of heads, the outcome log-probs (B, 5) of the claims when those heads see what they
    saw on each of the RESAMPLES reference claims of the claim's class (`classes`, (B,)), one at a time, with the
    probabilities averaged over them. The model is never shown anything it would not see on a real claim.
    `memory`: the claims encoded, when they already are."""
    claim_count, device = len(claims), classes.device
    if not claim_count:
        return [torch.empty(0, len(CLASSES), device=device) for _ in head_sets]
    _, reference_heads = patched_runner(model, reference, attention)()
    copies = torch.arange(RESAMPLES, device=device).repeat_interleave(claim_count)  # (K * B,) copy k: rows k*B..
    rows = classes.repeat(RESAMPLES) * RESAMPLES + copies  # the reference claim each row's heads come from
    # several sets of heads in one pass when the claims are few (row (s * K + k) * B + b: claim b, the heads of set
    # s replaced from copy k): a pass over thousands of rows gains nothing from growing further
    per_pass = max(1, PASS_ROWS // len(rows))
    runners: dict[int, tuple[Run, torch.Tensor]] = {}  # by sets per pass: the claims copied, and their stand-ins
    results = []
    for first in range(0, len(head_sets), per_pass):
        chosen = head_sets[first : first + per_pass]
        sets = len(chosen)
        if sets not in runners:
            categories = claims.categories.repeat(RESAMPLES * sets, 1)
            runners[sets] = (
                patched_runner(model, claims, attention, RESAMPLES * sets, memory),
                _stand_ins(attention, reference, reference_heads, categories, rows.repeat(sets)),
            )
        run, source = runners[sets]
        which = torch.stack([heads_chosen(attention.n_heads, *heads, device=device) for heads in chosen])
        log_probs = run(source, which.repeat_interleave(len(rows), dim=0))[0]
        results += list(log_probs.view(sets, RESAMPLES, claim_count, -1).logsumexp(1) - math.log(RESAMPLES))
    return results


def _resample_ablations(
    model: ClaimsTransformer, attention: Attention, claims: ClaimTensors, reference: ClaimTensors, memory: Memory | None
) -> list[tuple[dict, dict]]:
    """Per head, resampled (resampled_log_probs, each claim with claims of its true class): where each class's
    answers go, and the accuracy lost per class and per ADMIN check."""
    base = _accuracies(greedy_outcomes(patched_runner(model, claims, attention, memory=memory)()[0]), claims)
    singles = [(head,) for head in range(attention.n_heads)]
    results = []
    for log_probs in resampled_log_probs(model, attention, claims, claims.classes, singles, reference, memory):
        predicted = greedy_outcomes(log_probs)
        ablated = _accuracies(predicted, claims)
        results.append((_answers(predicted, claims), {k: base[k] - ablated[k] for k in base}))
    return results


def _pair_ablations(
    model: ClaimsTransformer, attention: Attention, claims: ClaimTensors, reference: ClaimTensors, memory: Memory | None
) -> dict[tuple[int, int], dict[str, float]]:
    """Per pair of heads (i < j) resampled together: the accuracy each reason loses (on the invalid claims only,
    the ones a reason's accuracy is measured on: half the cost)."""
    invalid = torch.nonzero(claims.classes != 0).squeeze(1)
    claims, memory = claims.subset(invalid), None if memory is None else memory_rows(memory, invalid)
    _, base = per_class_accuracy(
        greedy_outcomes(patched_runner(model, claims, attention, memory=memory)()[0]), claims.classes
    )
    pairs = list(itertools.combinations(range(attention.n_heads), 2))
    together = {}
    for pair, log_probs in zip(
        pairs, resampled_log_probs(model, attention, claims, claims.classes, pairs, reference, memory), strict=True
    ):
        _, ablated = per_class_accuracy(greedy_outcomes(log_probs), claims.classes)
        together[pair] = {r: base[r] - ablated[r] for r in REASONS}
    return together


def _partners(head: int, together: dict[tuple[int, int], dict[str, float]]) -> dict[str, dict[str, float]]:
    """What `head` and each other head, removed together, measured: partner's index (as text) -> numbers."""
    return {str(j if i == head else i): values for (i, j), values in together.items() if head in (i, j)}


def attribute(
    model: ClaimsTransformer,
    name: str,
    claims: ClaimTensors,
    pairs: PairBatch | None,
    reference: ClaimTensors,
    memory: Memory | None = None,
) -> tuple[HeadAttribution, ...]:
    """Every head of the attention `name`: patching effects on `pairs`, alone and with each other head (cross-
    attention only: an encoder head's output sits at the claim's own words, which twins do not share), and where
    the answers of the held-out `claims` (`memory`: them encoded, when they are) go when it is resampled from the
    `reference` claims (with each other head too, for cross-attention); not yet labelled
    (engine.interpret.ownership.owners)."""
    was_training = model.training
    model.eval()
    attention = model.attention_named(name)
    cross = not name.startswith("encoder.")
    patched = pairs is not None and cross
    twins = (encoded(model, pairs.invalid), encoded(model, pairs.valid)) if patched else None
    effects, pair_effects = patch_twins(model, attention, pairs, twins) if patched else (None, {})
    direct = direct_per_check(model, attention, pairs, twins[0]) if patched else None
    pair_drops = _pair_ablations(model, attention, claims, reference, memory) if cross else {}
    heads = []
    for head, (answers, drops) in enumerate(_resample_ablations(model, attention, claims, reference, memory)):
        necessity, sufficiency = effects[head] if effects else ({}, {})
        heads.append(
            HeadAttribution(
                necessity,
                sufficiency,
                answers,
                {c: drops[c] for c in CLASSES},
                {k: drops[k] for k in ADMIN_KINDS if k in drops},
                direct[head] if direct else {},
                pair_necessity=_partners(head, pair_effects),
                pair_ablation=_partners(head, pair_drops),
            )
        )
    model.train(was_training)
    return tuple(heads)
