"""Which cross-attention head carries which reason, measured causally as interpretability research does
(Heimersheim & Nanda 2024, "How to use and interpret activation patching").

- Minimal pairs: for each reason (and each of ADMIN's checks) claims that are invalid for that reason alone, each
  beside its twin with the one field that breaks the rule repaired, so the twin is valid. Both are written alike.
- Activation patching of one head's output between the twins, scored by the logit difference
  log P(reason) - log P(VALID) and normalised by the gap between the twins: **necessity** puts the valid twin's
  head output into the invalid claim (how much of the reason goes when that head no longer sees the problem);
  **sufficiency** puts the invalid twin's into the valid claim (how much of the reason that head brings alone).
- Resample ablation: "without this head" means one thing everywhere, on every page: the head sees what it saw on
  other claims of the same class (a fixed set of generated reference claims, RESAMPLES per class), never zeros or an
  average, which feed the model inputs it never saw (Chan et al. 2022, causal scrubbing; Li & Janson 2024;
  Heimersheim & Nanda 2024). The accuracy lost per class, and where each class's answers went, so a fallback to
  MEDICAL shows instead of hiding as a VALID drop.
- Redundancy: both kinds of removal also take heads away in pairs, since two heads that can each stand in for the
  other (a backup) look unneeded one at a time.

Every read and replacement of a head goes through its attention's HeadPoint (engine.model.transformer). What the
measurements make of each head (specialist, leans, ...): engine.interpret.ownership.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from data.catalog import load_catalog
from data.generator import ADMIN_KINDS, generate_claims
from data.rules import CLASSES, REASONS
from data.tokenizer import Tokenizer
from data.vocabulary import CATEGORIES
from engine.cache import Cache
from engine.interpret.metrics import admin_kind_accuracy, per_class_accuracy
from engine.interpret.pairs import CHECKS, PairBatch, claims_reading, reason_of
from engine.model.transformer import Attention, Memory, Packing
from engine.task.claims_model import TARGET_ID, ClaimsTransformer, greedy_outcomes
from engine.task.dataset import ClaimTensors, encode_claims
from engine.telemetry import RESAMPLED

MIN_GAP = 1e-6  # logit difference between twins below which a check is not measured


@dataclass(frozen=True)
class HeadAttribution:
    necessity: dict[str, float]  # per check (CHECKS); empty where the head is not patched (encoder heads)
    sufficiency: dict[str, float]
    answers: dict[str, dict[str, float]]  # resampled: true class -> share of its claims answered as each class
    ablation: dict[str, float]  # resampled: class -> accuracy drop
    admin_kinds: dict[str, float]  # resampled: ADMIN check -> accuracy drop on ADMIN claims of that kind
    direct: dict[str, float] = field(default_factory=dict)  # per check: direct logit attribution (direct_effects)
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


Run = Callable[[torch.Tensor | None, torch.Tensor | None], tuple[torch.Tensor, torch.Tensor]]


def encoded(model: ClaimsTransformer, claims: ClaimTensors) -> Memory:
    """The claims encoded once, with every cross-attention's keys and values, for many decoder passes."""
    with torch.no_grad():
        return model.with_keys_values(model.encode(claims.tokens, claims.categories))


def _rows(memory: Memory, index: torch.Tensor) -> Memory:
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
        memory = memory if copies == 1 else _rows(memory, copied)

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


def _rows_by_check(checks: tuple[str, ...]) -> dict[str, list[int]]:
    """check -> the rows of a pair batch that test it, in the order checks first appear."""
    return {c: [i for i, row in enumerate(checks) if row == c] for c in dict.fromkeys(checks)}


def _per_check(log_probs: torch.Tensor, checks: tuple[str, ...]) -> dict[str, float]:
    """Mean logit difference log P(reason) - log P(VALID) over each check's rows, the reason being the check's."""
    reasons = torch.tensor([CLASSES.index(reason_of(c)) for c in checks], device=log_probs.device)
    differences = log_probs.gather(1, reasons[:, None]).squeeze(1) - log_probs[:, 0]  # (B,)
    return {c: float(differences[index].mean()) for c, index in _rows_by_check(checks).items()}


def _patching(
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


def _direct(model: ClaimsTransformer, attention: Attention, pairs: PairBatch, memory: Memory) -> list[dict[str, float]]:
    """Per head: mean direct logit attribution on each check's invalid twins (`memory`: them encoded)."""
    reasons = torch.tensor([REASONS.index(reason_of(c)) for c in pairs.checks], device=pairs.invalid.tokens.device)
    with torch.no_grad():
        effects = direct_effects(model, attention, pairs.invalid, reasons, memory)  # (B, H)
    rows = _rows_by_check(pairs.checks)
    return [{c: float(effects[index, head].mean()) for c, index in rows.items()} for head in range(attention.n_heads)]


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
    claims, memory = claims.subset(invalid), None if memory is None else _rows(memory, invalid)
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
    effects, pair_effects = _patching(model, attention, pairs, twins) if patched else (None, {})
    direct = _direct(model, attention, pairs, twins[0]) if patched else None
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
