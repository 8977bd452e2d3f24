"""Twin claims (minimal pairs): a valid claim and one that breaks exactly one check, alike in every other field;
patching a head from one twin into the other measures what that check needs of it."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass, replace

import torch

from data.catalog import Catalog, load_catalog, price_range
from data.generator import ADMIN_KINDS, Claim, generate_claims
from data.rules import ClaimFields, check_claim
from data.styles import terse
from data.tokenizer import Tokenizer
from data.vocabulary import parse_claim
from engine.cache import Cache
from engine.task.dataset import ClaimTensors, encode_claims

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
    return check, {
        "sex": ["M", "F"],
        "age": list(range(1, 100)),
        "specialty": list(catalog.specialties),
        "place": list(catalog.places),
    }[check]


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
        if any(parse_claim(tokenizer.encode(t)) != f for t, f in zip(texts, (claim.fields, fields), strict=True)):
            continue
        pairs.append(MinimalPair(check, replace(claim, text=texts[0]), Claim(texts[1], "VALID", "NONE", fields, None)))
        counts[check] += 1
    return pairs


def pair_batch(
    pairs: list[MinimalPair], tokenizer: Tokenizer, max_len: int, device: torch.device | str = "cpu"
) -> PairBatch:
    return PairBatch(
        encode_claims([p.invalid for p in pairs], tokenizer, max_len).to(device),
        encode_claims([p.valid for p in pairs], tokenizer, max_len).to(device),
        tuple(p.check for p in pairs),
    )


# Made once per tokenizer (0.25 s a run start otherwise), shared by runs in several threads (a race, a study).
_RUN_PAIRS: Cache[PairBatch] = Cache("minimal pairs", max_entries=8, key=("vocabulary", "aliases", "max_len", "device"))


def claims_reading(tokenizer: Tokenizer) -> dict[str, Hashable]:
    """What makes two tokenizers read claims alike, as cache key fields: their vocabulary and aliases."""
    return {"vocabulary": tokenizer.vocab, "aliases": tuple(sorted(tokenizer.aliases.items()))}


def run_pairs(tokenizer: Tokenizer, max_len: int, device: torch.device | str = "cpu") -> PairBatch:
    """The minimal pairs every measurement of every run is taken on, in training and by `engine analyze` alike."""
    return _RUN_PAIRS.get(
        lambda: pair_batch(minimal_pairs(load_catalog(), tokenizer), tokenizer, max_len, device),
        **claims_reading(tokenizer),
        max_len=max_len,
        device=str(device),
    )
