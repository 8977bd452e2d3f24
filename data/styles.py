"""Claims rewritten from their fields in the plain styles people type, for the metamorphic benchmark.

Each style says the same fields (same diagnosis, item, dose, amount, patient, provider) in other words, so the
right answer does not change: a model whose verdict moves with the wording has learned the generator's phrasing,
not the claim. None of these styles is used for training.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from data.catalog import Catalog
from data.phrasing import fmt_number
from data.rules import ClaimFields

FILLERS = ("please review", "thanks", "submitted for payment", "see attached notes", "urgent", "resubmitted")


def _parts(fields: ClaimFields, catalog: Catalog, abbreviated: bool = False) -> list[str]:
    """One phrase per field, in the generator's order: diagnosis, item, amount, patient, provider, place."""
    parts = []
    if fields.diagnosis is not None:
        parts.append(("dx " if abbreviated else "") + catalog.diagnoses[fields.diagnosis].name)
    if fields.drug is not None:
        dose = f" {fmt_number(fields.dose_mg)} mg" if fields.dose_mg is not None else ""
        parts.append(("rx " if abbreviated else "") + catalog.drugs[fields.drug].name + dose)
    if fields.procedure is not None:
        parts.append(catalog.procedures[fields.procedure].name)
    if fields.amount_usd is not None:
        parts.append(("billed " if abbreviated else "") + _amount(fields.amount_usd))
    if fields.age is not None or fields.sex is not None:
        parts.append(_patient(fields, abbreviated))
    if fields.specialty is not None:
        parts.append(("w/ " if abbreviated else "") + catalog.specialties[fields.specialty].name)
    if fields.place is not None:
        parts.append(("@ " if abbreviated else "") + catalog.places[fields.place].name)
    return parts


def _amount(usd: float) -> str:
    return f"${usd:,.2f}".removesuffix(".00")


def _patient(fields: ClaimFields, abbreviated: bool) -> str:
    if fields.age is None:
        words = {"M": "male", "F": "female"}[fields.sex]
    elif fields.sex is None:  # a bare number is not an age
        words = f"{fields.age} y/o" if abbreviated else f"age {fields.age}"
    else:
        words = f"{fields.age}{' y/o' if abbreviated else ''} {fields.sex}"
    return ("pt " if abbreviated else "") + words


def terse(fields: ClaimFields, catalog: Catalog, rng: random.Random) -> str:
    """'Asthma, Montelukast 10 mg, $30'"""
    return ", ".join(_parts(fields, catalog))


def shuffled(fields: ClaimFields, catalog: Catalog, rng: random.Random) -> str:
    """The terse fields in another order."""
    parts = _parts(fields, catalog)
    rng.shuffle(parts)
    return ", ".join(parts)


def padded(fields: ClaimFields, catalog: Catalog, rng: random.Random) -> str:
    """The terse claim with words that carry nothing before and after it."""
    return f"{rng.choice(FILLERS).capitalize()}: {terse(fields, catalog, rng)}. {rng.choice(FILLERS)}"


def lower_plain(fields: ClaimFields, catalog: Catalog, rng: random.Random) -> str:
    """Lower case, no commas."""
    return " ".join(_parts(fields, catalog)).lower()


def abbreviated(fields: ClaimFields, catalog: Catalog, rng: random.Random) -> str:
    """Claim-note shorthand: 'dx asthma; rx montelukast 10 mg; billed $30; pt 54 y/o F'."""
    return "; ".join(_parts(fields, catalog, abbreviated=True))


def pipes(fields: ClaimFields, catalog: Catalog, rng: random.Random) -> str:
    """A form exported as one line: 'Asthma | Montelukast 10 mg | $30'."""
    return " | ".join(_parts(fields, catalog))


STYLES: dict[str, Callable[[ClaimFields, Catalog, random.Random], str]] = {
    "terse": terse,
    "shuffled": shuffled,
    "padded": padded,
    "lower, no commas": lower_plain,
    "abbreviated": abbreviated,
    "pipes": pipes,
}
