"""The rules checker: labels generated claims, and is the rules baseline the model is compared with.

A claim bills at most one item, a drug (with its daily dose) or a procedure, for one diagnosis. Around each threshold
lies a gap the generator never draws from (valid values stay half an octave short of it, invalid ones start 10%
past it), so labels are not noisy.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from data.catalog import Catalog, Diagnosis, Drug, Procedure, price_range

REASONS = ("MEDICAL", "DOSAGE", "COST", "ADMIN")
VALID, INVALID, NO_REASON = "VALID", "INVALID", "NONE"
# The five outcomes a claim can have; index 0 is VALID, 1.. are INVALID with that reason.
CLASSES = (VALID, *REASONS)
CANNOT_CHECK = "CANNOT CHECK"  # the rules' answer on a claim a part of which was written but not read

# The parts of a claim a verdict rests on (data.reading finds those written but not read). VALID rests on all of
# them; ADMIN on the diagnosis or the item, whichever carries the restriction, so either one read will do. WHOLE
# stands for a claim too little of which was read: no verdict rests on it.
PARTS = ("diagnosis", "item", "dose", "price")
WHOLE = "claim"
RESTS_ON = {
    VALID: PARTS,
    "MEDICAL": ("diagnosis", "item"),
    "DOSAGE": ("item", "dose"),
    "COST": ("item", "price"),
    "ADMIN": ("diagnosis", "item"),
}

DOSE_HIGH = 1.5  # invalid above 1.5 x the label's daily maximum
DOSE_LOW = 0.25  # invalid below 0.25 x the usual minimum daily dose
COST_HIGH = 2.5  # invalid above 2.5 x the top of the normal price range
COST_LOW = 0.4  # invalid below 0.4 x the bottom of the normal price range


@dataclass(frozen=True)
class ClaimFields:
    """A structured claim; any field may be missing, and rules that need a missing field do not run."""

    diagnosis: str | None = None  # dx_key
    drug: str | None = None  # drug_key
    dose_mg: float | None = None  # daily dose
    procedure: str | None = None  # proc_key
    amount_usd: float | None = None
    age: int | None = None
    sex: str | None = None  # "M" | "F"
    specialty: str | None = None  # specialty_key
    place: str | None = None  # place_key


@dataclass(frozen=True)
class Violation:
    reason: str  # one of REASONS
    kind: str  # sex, age, specialty, place, drug_dx, proc_dx, dose_high, dose_low, cost_high, cost_low
    message: str


def _lookup(table: dict, key: str | None, what: str) -> Any:
    if key is None:
        return None
    if key not in table:
        raise ValueError(f"unknown {what} '{key}'")
    return table[key]


def _medical(dx: Diagnosis | None, drug: Drug | None, proc: Procedure | None) -> list[Violation]:
    if dx is None:
        return []
    found = []
    if drug is not None and not drug.fits(dx.key):
        found.append(Violation("MEDICAL", "drug_dx", f"{drug.name} is not a treatment for {dx.name.lower()}"))
    if proc is not None and not proc.fits(dx.key):
        found.append(Violation("MEDICAL", "proc_dx", f"{proc.name} does not fit {dx.name.lower()}"))
    return found


def _dosage(drug: Drug | None, dose: float | None) -> list[Violation]:
    if drug is None or dose is None or math.isnan(dose):
        return []
    if dose > DOSE_HIGH * drug.dose_label_max_mg:
        return [
            Violation(
                "DOSAGE",
                "dose_high",
                f"{dose:g} mg/day of {drug.name} is above 1.5 x its label maximum ({drug.dose_label_max_mg:g} mg/day)",
            )
        ]
    if dose < DOSE_LOW * drug.dose_min_mg:
        return [
            Violation(
                "DOSAGE",
                "dose_low",
                f"{dose:g} mg/day of {drug.name} is below 0.25 x its usual minimum ({drug.dose_min_mg:g} mg/day)",
            )
        ]
    return []


def _billed(item: Drug | Procedure) -> str:
    return f"a month of {item.name}" if isinstance(item, Drug) else item.name


def _price_violation(item: Drug | Procedure, amount: float) -> Violation | None:
    low, high = price_range(item)
    if amount > COST_HIGH * high:
        message = f"${amount:,.2f} is above 2.5 x the normal top for {_billed(item)} (${high:,.0f})"
        return Violation("COST", "cost_high", message)
    if amount < COST_LOW * low:
        message = f"${amount:,.2f} is below 0.4 x the normal bottom for {_billed(item)} (${low:,.2f})"
        return Violation("COST", "cost_low", message)
    return None


def _cost(drug: Drug | None, proc: Procedure | None, amount: float | None) -> list[Violation]:
    if amount is None or math.isnan(amount):
        return []
    # A claim should bill one item; if it names two, the amount only has to suit one of them.
    checks = [_price_violation(item, amount) for item in (drug, proc) if item is not None]
    if not checks or None in checks:
        return []
    return [checks[0]]


def _outside(age: int, low: int | None, high: int | None) -> bool:
    return (low is not None and age < low) or (high is not None and age > high)


def _age_text(low: int | None, high: int | None) -> str:
    if high is None:
        return f"{low}+"
    return f"{low or 0}-{high}"


def _admin(fields: ClaimFields, dx: Diagnosis | None, proc: Procedure | None, catalog: Catalog) -> list[Violation]:
    restricted = [item for item in (dx, proc) if item is not None]
    found = []
    # One violation per kind, even when both the diagnosis and the procedure conflict with the patient.
    if fields.sex is not None:
        clashes = [item.name for item in restricted if item.sex is not None and item.sex != fields.sex]
        if clashes:
            found.append(Violation("ADMIN", "sex", f"sex {fields.sex} conflicts with {' and '.join(clashes)}"))
    if fields.age is not None:
        clashes = [
            f"{item.name} ({_age_text(item.age_min, item.age_max)})"
            for item in restricted
            if _outside(fields.age, item.age_min, item.age_max)
        ]
        if clashes:
            found.append(Violation("ADMIN", "age", f"age {fields.age} conflicts with {' and '.join(clashes)}"))
    if proc is not None and fields.specialty is not None and fields.specialty not in proc.specialties:
        name = catalog.specialties[fields.specialty].name
        found.append(Violation("ADMIN", "specialty", f"{name} does not bill {proc.name}"))
    if proc is not None and fields.place is not None and fields.place not in proc.places:
        name = catalog.places[fields.place].name
        found.append(Violation("ADMIN", "place", f"{proc.name} is not done at {name.lower()}"))
    return found


def check_claim(fields: ClaimFields, catalog: Catalog) -> list[Violation]:
    """Every rule the claim breaks (none for a valid claim); ValueError for keys not in the catalog."""
    dx = _lookup(catalog.diagnoses, fields.diagnosis, "diagnosis")
    drug = _lookup(catalog.drugs, fields.drug, "drug")
    proc = _lookup(catalog.procedures, fields.procedure, "procedure")
    _lookup(catalog.specialties, fields.specialty, "specialty")
    _lookup(catalog.places, fields.place, "place")
    if fields.sex is not None and fields.sex not in ("M", "F"):
        raise ValueError(f"sex must be 'M' or 'F', not '{fields.sex}'")
    return [
        *_medical(dx, drug, proc),
        *_dosage(drug, fields.dose_mg),
        *_cost(drug, proc, fields.amount_usd),
        *_admin(fields, dx, proc, catalog),
    ]


def label(fields: ClaimFields, catalog: Catalog) -> tuple[str, str]:
    """("VALID", "NONE") or ("INVALID", reason); ValueError if it breaks rules of more than one reason."""
    return label_of(check_claim(fields, catalog))


def unchecked(outcome: str, unread: Collection[str]) -> tuple[str, ...]:
    """The parts that `outcome` (VALID or a reason) rests on among the `unread` parts: () when it stands."""
    if WHOLE in unread:
        return (WHOLE,)
    missing = tuple(part for part in RESTS_ON[outcome] if part in unread)
    if outcome == "ADMIN" and len(missing) < len(RESTS_ON["ADMIN"]):
        return ()
    return missing


def label_read(violations: list[Violation], unread: Collection[str]) -> tuple[str, str]:
    """label_of(violations), or (CANNOT_CHECK, NONE) when that answer rests on a part written but not read; a
    ValueError still for rules of several reasons."""
    verdict, reason = label_of(violations)
    return (
        (CANNOT_CHECK, NO_REASON) if unchecked(reason if verdict == INVALID else VALID, unread) else (verdict, reason)
    )


def label_of(violations: list[Violation]) -> tuple[str, str]:
    """label() of a claim that breaks `violations`."""
    reasons = sorted({v.reason for v in violations}, key=REASONS.index)
    if not reasons:
        return VALID, NO_REASON
    if len(reasons) > 1:
        raise ValueError(f"claim breaks rules of several reasons ({', '.join(reasons)})")
    return INVALID, reasons[0]
