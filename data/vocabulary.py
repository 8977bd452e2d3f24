"""The vocabulary claims are read into: one token per catalog entity (every synonym shares it), magnitude tokens
for amounts, doses and ages, a fixed list of template and filler words, and the token types. How text becomes
these tokens: data.tokenizer."""

from __future__ import annotations

import math
from dataclasses import dataclass

from data.catalog import Catalog
from data.rules import ClaimFields
from data.text import SEX_WORDS, phrase_key

CATEGORIES = ("diagnosis", "drug", "dose", "procedure", "amount", "age", "sex", "specialty", "place", "other")
ENTITY_PREFIXES = {
    "diagnosis": "dx", "drug": "drug", "procedure": "proc", "specialty": "spec", "place": "place",
}  # fmt: skip
PREFIX_CATEGORY = {
    **{prefix: category for category, prefix in ENTITY_PREFIXES.items()},
    "sex": "sex", "amt": "amount", "dose": "dose", "age": "age",
}  # fmt: skip
AMOUNT_BUCKETS = (-4, 44)  # $0.25 .. $4.2M in half-octaves
DOSE_BUCKETS = (-24, 36)  # 0.24 mcg .. 262 g
AGE_MAX = 110

# Template and filler words a claim is written with; fixed, so one catalog always gives the same vocabulary.
_WORD_TEXT = """
    $ % @ a an the and or but with w without wo of for to in at on by from per as is was be been has had
    have not no yes this that it its his her he she they them their him patient patients pt pts claim
    claims billed bill billing bills charge charges charged cost costs price priced fee fees total amount
    amt paid payment due sum invoice invoiced submitted submit please pls kindly review reviewed check
    verify audit urgent thanks thank you note notes re new dx diagnosis diagnosed diagnoses hx history
    known presenting presents presented complaint complains suffering suspected confirmed rx prescribed
    prescription prescribing medication medications med meds drug drugs started start starting continue
    continued continuing refill refills refilled given taking takes take dose dosage doses strength daily
    day days qd once twice per week weeks wk wks weekly month months monthly supply po oral iv inhaled
    nightly morning evening bedtime
    procedure procedures proc service services cpt code codes hcpcs icd performed done underwent
    undergoing received receiving had scheduled ordered order orders provided s p status post provider
    rendering specialty physician doctor dr md do seen see saw place location setting pos visit visits
    type sex gender age aged years year old yrs yr yo y o hour hours hr hrs min mins minute minutes follow
    up plus item line items requested request approve approved deny denied pending needs need auth
    authorization prior inv id ref number member policy date dos today yesterday tomorrow mr mrs ms x also
    additional additionally other same discharged room unit floor bed home nursing facility pharmacy cash
    surgery surgical test tests testing labs scan imaging xray x ray ultrasound screening exam examination
    evaluation consult consultation treatment treat treated therapy session care management workup work
    chronic acute mild moderate severe stable uncontrolled controlled established initial left right
    bilateral pain symptoms symptom worsening improved improving because since after before during
    following pre about approximately approx around roughly just only each every first second third last
    next recent recently long standing reason reasons why how what which who when where usual normal
    typical standard generic brand name medicine medical insurance insurer payer plan coverage covered
    copay deductible reimbursement cents more less than over under via will would should could can may
    might must did does not nothing ok okay fine came went got done one two three r l f/u w/o s/p h/o c/o
    r/o
"""
# Words that count a dose in pieces, not in a mass: "2 puffs" is a dose the model cannot weigh.
DOSE_FORM_WORDS = frozenset({"tab", "tabs", "tablet", "tablets", "cap", "caps", "capsule", "capsules", "puff", "puffs"})
WORDS = tuple(sorted(set(_WORD_TEXT.split()) | DOSE_FORM_WORDS))
SPECIALS = ("<pad>", "<unk>", "<num>")


def category_of(text: str) -> str:
    """A vocabulary entry's field category: "proc:33533" -> "procedure"; words and specials are "other"."""
    prefix, colon, _ = text.partition(":")
    return PREFIX_CATEGORY.get(prefix, "other") if colon else "other"


def build_vocabulary(catalog: Catalog) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]]]:
    """Deterministic vocabulary: specials, sex, one token per catalog entity, words, number buckets; and each
    entity token's names and aliases."""
    aliases: dict[str, tuple[str, ...]] = {}
    groups = (
        ("diagnosis", catalog.diagnoses, lambda d: (d.name, d.icd10cm)),
        ("drug", catalog.drugs, lambda d: (d.name,)),
        ("procedure", catalog.procedures, lambda p: (p.name, p.key)),
        ("specialty", catalog.specialties, lambda s: (s.name,)),
        ("place", catalog.places, lambda p: (p.name,)),
    )
    for category, items, names in groups:
        for key, item in items.items():
            aliases[f"{ENTITY_PREFIXES[category]}:{key}"] = tuple(dict.fromkeys((*names(item), *item.aliases)))
    # A word that is itself a catalog name always reads as that entity, so it needs no word token.
    one_piece_names = {key[0] for names in aliases.values() for key in map(phrase_key, names) if len(key) == 1}
    words = [w for w in WORDS if w not in one_piece_names and w not in SEX_WORDS]
    vocab = (
        *SPECIALS,
        "sex:M",
        "sex:F",
        *aliases,
        *words,
        *(f"amt:{k}" for k in range(AMOUNT_BUCKETS[0], AMOUNT_BUCKETS[1] + 1)),
        *(f"dose:{k}" for k in range(DOSE_BUCKETS[0], DOSE_BUCKETS[1] + 1)),
        *(f"age:{n}" for n in range(AGE_MAX + 1)),
    )
    return vocab, aliases


@dataclass(frozen=True)
class Token:
    id: int
    text: str  # vocabulary string; "<unk>" for an unknown word
    surface: str  # exactly what the input had at [start, end)
    start: int
    end: int
    category: str
    value: float | None = None  # the number behind an amount (USD), dose (mg) or age token


_new_object, _set_attribute = object.__new__, object.__setattr__


def fast_token(id: int, text: str, surface: str, start: int, end: int, category: str, value: float | None) -> Token:
    """Token(...) at half the cost: a frozen dataclass's __init__ sets its seven fields one call at a time,
    and building tokens is most of the work of encoding a claim. The result is an ordinary, frozen Token."""
    token = _new_object(Token)
    _set_attribute(token, "__dict__", {"id": id, "text": text, "surface": surface, "start": start, "end": end,
                                       "category": category, "value": value})  # fmt: skip
    return token


@dataclass(frozen=True)
class Encoded:
    tokens: tuple[Token, ...]
    truncated: bool
    warnings: tuple[str, ...]  # plain-English notes on implausible numbers


def entity_of(token: Token) -> tuple[str, str] | None:
    """("procedure", "33533") for a catalog-entity token, None for anything else."""
    if token.category not in ENTITY_PREFIXES:
        return None
    return token.category, token.text.partition(":")[2]


def parse_claim(encoded: Encoded) -> ClaimFields:
    """The claim fields in encoded text (the first of each kind), so the rules can run on pasted text."""
    found: dict[str, object] = {}
    for token in encoded.tokens:
        entity = entity_of(token)
        if entity is not None:
            found.setdefault(entity[0], entity[1])
        elif token.category == "sex":
            found.setdefault("sex", token.text.partition(":")[2])
        elif token.category == "dose" and token.value is not None:
            found.setdefault("dose_mg", token.value)
        elif token.category == "amount" and token.value is not None:
            found.setdefault("amount_usd", token.value)
        elif token.category == "age" and token.value is not None and math.isfinite(token.value):
            found.setdefault("age", max(0, int(token.value)))
    return ClaimFields(
        diagnosis=found.get("diagnosis"),
        drug=found.get("drug"),
        dose_mg=found.get("dose_mg"),
        procedure=found.get("procedure"),
        amount_usd=found.get("amount_usd"),
        age=found.get("age"),
        sex=found.get("sex"),
        specialty=found.get("specialty"),
        place=found.get("place"),
    )
