"""Seeded, deterministic claim generator labelled by the rules.

Half the claims are valid and each invalid reason gets an eighth, ADMIN's four kinds (sex, age, specialty,
place) equally often. Each claim is built for its target, then checked: a valid claim must break no rule and
an invalid one exactly one, or it is drawn again. Valid numbers mostly sit inside the normal range, some past it
but at least half an octave short of the rules' lines; invalid ones at least 10% past the lines (dose >= 1.65x the
label max or <= 0.23x the minimum; amount >= 2.75x the normal top or <= 0.36x the bottom), often just past them.
Both are often another item's normal value, so no single threshold on a number separates valid from invalid. A
tenth of the claims that are not MEDICAL leave the diagnosis out (about one in eight of the sex and age conflicts),
and a few valid or sex and age claims name no billed item at all.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass

from data import rules
from data.catalog import UNIVERSAL, Catalog, Diagnosis, Drug, Procedure, load_catalog, price_range
from data.phrasing import DRUG_PLACES, Writer
from data.rules import INVALID, NO_REASON, VALID, ClaimFields, check_claim

ADMIN_KINDS = ("sex", "age", "specialty", "place")
# One cycle of targets with the wanted class balance: 16 valid, 4 per invalid reason, ADMIN one per kind.
TARGET_CYCLE = (
    *[(VALID, None)] * 16,
    *[("MEDICAL", None)] * 4,
    *[("DOSAGE", None)] * 4,
    *[("COST", None)] * 4,
    *[("ADMIN", kind) for kind in ADMIN_KINDS],
)
# Invalid numbers start 10% past the rules' thresholds: far enough that no label is a rounding away from the other,
# near enough that the model learns where the rule's line is (claims people write sit anywhere past it).
MARGIN = 1.1
# They reach 50x past the normal range, so that a dose far past it ("colchicine 60 mg", 33x its label maximum) is one
# the model has met (docs/robustness.md, the generator's gaps).
DOSE_HIGH, DOSE_LOW = (rules.DOSE_HIGH * MARGIN, 50.0), (0.02, rules.DOSE_LOW / MARGIN)  # x label max, x minimum
AMOUNT_HIGH, AMOUNT_LOW = (rules.COST_HIGH * MARGIN, 50.0), (0.02, rules.COST_LOW / MARGIN)  # x normal top, bottom
# High amounts reach at least this, whatever the item's normal top: 50x the top of a $40 test is only $2,000, and
# "Urinalysis, $4,800" (120x its top) must be met too (E11 in docs/robustness.md).
HIGH_AMOUNT_REACH_USD = 100_000
# A share of invalid numbers lands just past the line (within 1.5x of where invalid values start), so that each
# item's line is met often from the invalid side too ("appendectomy, $100,000", 2.9x its normal top, is COST).
NEAR_LINE_SHARE, NEAR_LINE_SPAN = 0.3, 1.5
# This share of valid numbers lies past the normal range, up to half an octave short of the rules' line (a dose
# down to 0.35x the usual minimum, a price up to 1.77x the normal top): valid by the rules, so each line is met from
# both sides ("rosuvastatin 2 mg", 0.4x its usual minimum, is valid). Half an octave is what one magnitude token
# spans, so no token holds a valid number here and an invalid one past the line: nearer, the model reads claims that
# have two right answers, and learns slower (E6 in docs/robustness.md).
PAST_NORMAL_SHARE, SHORT_OF_LINE = 0.15, 2**0.5
# A sex or age conflict comes from the diagnosis, the procedure or both; with the diagnosis dropped from more of
# these claims, a procedure's own rule is met apart from its diagnosis's ("PSA level for a 12-year-old boy" names no
# diagnosis, and is ADMIN). A claim whose conflict went with the diagnosis is drawn again, so about one in eight of
# them ends up without one (E12 in docs/robustness.md).
PATIENT_CONFLICT_DX_KEPT, DX_KEPT = 0.7, 0.9
# Claims that name no billed item (as when it is left out, or written in words the tokenizer does not read as an
# item) are valid, or ADMIN when the patient does not fit the diagnosis; a few are in training so that a claim with no
# item read ("Man, 35, prenatal care 4-6 visits, pregnancy, $900") is one the model has met (E10 in
# docs/robustness.md).
NO_ITEM_SHARE = 0.03
MIN_DOSE_MG, MIN_AMOUNT_USD = 0.001, 0.3  # invalid values stay above these, so every number stays printable
AGE_MARGIN = 3  # an age conflict is at least this many years outside the allowed range
ADULT = 18  # catalog doses are adult doses, so valid drug claims are for adults
MAX_ATTEMPTS = 200
NICE_STEPS = (1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 6.25, 7.5, 8)  # tablet strengths come in these steps


@dataclass(frozen=True)
class Claim:
    text: str
    verdict: str  # VALID | INVALID
    reason: str  # NONE | MEDICAL | DOSAGE | COST | ADMIN
    fields: ClaimFields
    admin_kind: str | None  # sex | age | specialty | place, for ADMIN claims


def _round_sig(value: float, up: bool) -> float:
    """value rounded to two significant digits, away from the normal range, so a gap never shrinks."""
    step = 10 ** (math.floor(math.log10(value)) - 1)
    return round((math.ceil(value / step) if up else math.floor(value / step)) * step, 6)


def _nice_doses(drug: Drug) -> list[float]:
    """Doses people write for this drug: its own limits plus round strengths inside [minimum, label max]."""
    low, high = drug.dose_min_mg, drug.dose_label_max_mg
    grid = {round(step * 10**exp, 6) for exp in range(-4, 5) for step in NICE_STEPS}
    return sorted({low, drug.dose_max_mg, high} | {d for d in grid if low <= d <= high})


def _by_item(pairs: list[tuple[Diagnosis, Drug | Procedure]]) -> list[tuple[Drug | Procedure, list[Diagnosis]]]:
    """(item, the diagnoses it is paired with), in the order the items first appear."""
    grouped: dict[str, tuple[Drug | Procedure, list[Diagnosis]]] = {}
    for dx, item in pairs:
        grouped.setdefault(item.key, (item, []))[1].append(dx)
    return list(grouped.values())


def _restricted(dx: Diagnosis, item: Drug | Procedure) -> list[Diagnosis | Procedure]:
    """What carries sex and age restrictions in a claim: the diagnosis, and the procedure if one is billed."""
    return [dx] if isinstance(item, Drug) else [dx, item]


class FastRandom(random.Random):
    """random.Random with choice(), randint() and shuffle() several times faster: a claim takes some 20 draws,
    and skipping exact rejection sampling biases a draw by at most one part in 2**53."""

    def choice(self, seq):
        return seq[int(self.random() * len(seq))]

    def randint(self, a: int, b: int) -> int:
        return a + int(self.random() * (b - a + 1))

    def shuffle(self, x: list) -> None:
        for i in range(len(x) - 1, 0, -1):
            j = int(self.random() * (i + 1))
            x[i], x[j] = x[j], x[i]


class _Generator:
    def __init__(self, catalog: Catalog, rng: random.Random) -> None:
        self.catalog, self.rng = catalog, rng
        self.writer = Writer(catalog, rng)
        self.diagnoses = list(catalog.diagnoses.values())
        self.drugs = list(catalog.drugs.values())
        self.procedures = list(catalog.procedures.values())
        self.universal = [p for p in self.procedures if UNIVERSAL in p.dx_keys]
        self.specific = {d.key: [p for p in self.procedures if d.key in p.dx_keys] for d in self.diagnoses}
        self.fitting_drugs = {d.key: [x for x in self.drugs if x.fits(d.key)] for d in self.diagnoses}
        self.other_drugs = {d.key: [x for x in self.drugs if not x.fits(d.key)] for d in self.diagnoses}
        self.other_procs = {d.key: [p for p in self.procedures if not p.fits(d.key)] for d in self.diagnoses}
        # Rules do not check who prescribes or where; keep it plausible: someone who treats the diagnosis, and the
        # family / internal medicine doctor, who prescribes for every one of them, so that every pairing with one is
        # met in training ("family doctor" next to GERD too; E3 in docs/robustness.md).
        self.prescribers = {
            d.key: sorted(
                {s for p in self.specific[d.key] for s in p.specialties} - {"laboratory", "radiology"} | {"family"}
            )
            for d in self.diagnoses
        }
        self.billers = {p.key: sorted(p.specialties) for p in self.procedures}
        self.non_billers = {p.key: [s for s in catalog.specialties if s not in p.specialties] for p in self.procedures}
        self.sites = {p.key: sorted(p.places) for p in self.procedures}
        self.non_sites = {p.key: [x for x in catalog.places if x not in p.places] for p in self.procedures}
        self.nice_doses = {d.key: _nice_doses(d) for d in self.drugs}
        self.dose_pool = sorted({dose for doses in self.nice_doses.values() for dose in doses})
        self.amount_pool = sorted({v for item in self.drugs + self.procedures for v in self._normal_amounts(item)})
        pairs = [(dx, item) for dx in self.diagnoses for item in self.drugs + self.procedures if item.fits(dx.key)]
        self.sex_pairs = [pair for pair in pairs if any(r.sex for r in _restricted(*pair))]
        self.age_pairs = [
            pair for pair in pairs if any(r.age_min is not None or r.age_max is not None for r in _restricted(*pair))
        ]
        # A dose limit, a price range, a procedure's places and specialties are the item's own rules: for claims
        # that break one, the item is drawn first, so an item that fits one diagnosis shows its rules as often as
        # one that fits twenty (drawn by diagnosis or by pair, a procedure that fits every diagnosis meets a wrong
        # place some thirty times as often as one that fits a single one; E2 in docs/robustness.md).
        self.items_breaking = {
            "DOSAGE": _by_item([(dx, item) for dx, item in pairs if isinstance(item, Drug)]),
            "COST": _by_item(pairs),
            "ADMIN": _by_item([(dx, item) for dx, item in pairs if isinstance(item, Procedure)]),
        }

    @staticmethod
    def _normal_amounts(item: Drug | Procedure) -> tuple[float, ...]:
        low, high = price_range(item)
        return low, high, _round_sig(math.sqrt(low * high), up=True) if low < high else high

    # ---- one claim -----------------------------------------------------------------------------------------

    def claim(self, reason: str, admin_kind: str | None) -> Claim:
        for _ in range(MAX_ATTEMPTS):
            fields = self._fields(reason, admin_kind)
            if fields is None:
                continue
            violations = check_claim(fields, self.catalog)
            if reason == VALID and not violations:
                return Claim(self.writer.text(fields), VALID, NO_REASON, fields, None)
            if len(violations) == 1 and violations[0].reason == reason:
                kind = violations[0].kind if reason == "ADMIN" else None
                if kind == admin_kind:
                    return Claim(self.writer.text(fields), INVALID, reason, fields, kind)
        raise RuntimeError(f"could not build a {reason} {admin_kind or ''} claim in {MAX_ATTEMPTS} attempts")

    def _fields(self, reason: str, admin_kind: str | None) -> ClaimFields | None:
        rng = self.rng
        if admin_kind in ("sex", "age"):
            dx, item = rng.choice(self.sex_pairs if admin_kind == "sex" else self.age_pairs)
        elif reason in self.items_breaking:
            item, diagnoses = rng.choice(self.items_breaking[reason])
            dx = rng.choice(diagnoses)
        else:
            dx = rng.choice(self.diagnoses)
            item = self._item(dx, fits=reason != "MEDICAL")
        return self._fill(dx, item, reason, admin_kind)

    def _item(self, dx: Diagnosis, fits: bool) -> Drug | Procedure:
        rng = self.rng
        if rng.random() < 0.5:
            return rng.choice(self.fitting_drugs[dx.key] if fits else self.other_drugs[dx.key])
        if fits:
            return rng.choice(self.universal if rng.random() < 0.2 else self.specific[dx.key])
        return rng.choice(self.other_procs[dx.key])

    def _fill(self, dx: Diagnosis, item: Drug | Procedure, reason: str, admin_kind: str | None) -> ClaimFields | None:
        rng = self.rng
        is_drug = isinstance(item, Drug)
        dose = None
        if is_drug and (reason == "DOSAGE" or rng.random() < 0.9):
            dose = self._bad_dose(item) if reason == "DOSAGE" else self._good_dose(item)
        amount = None
        if reason == "COST" or rng.random() < 0.85:
            amount = self._bad_amount(item) if reason == "COST" else self._good_amount(item)
        restricted = _restricted(dx, item)
        age = self._age(dx, restricted, is_drug, admin_kind == "age", rng.random() < 0.55)
        sex = self._sex(restricted, admin_kind == "sex", rng.random() < 0.55)
        if age is False or sex is False:
            return None
        specialty, place = self._provider(dx, item, admin_kind)
        # without a diagnosis an ADMIN claim is still invalid when the procedure carries the conflict (else redrawn)
        patient_conflict = admin_kind in ("sex", "age")
        keep_dx = reason == "MEDICAL" or rng.random() < (PATIENT_CONFLICT_DX_KEPT if patient_conflict else DX_KEPT)
        drop_item = (reason == VALID or patient_conflict) and rng.random() < NO_ITEM_SHARE
        return ClaimFields(
            diagnosis=dx.key if keep_dx else None,
            drug=None if drop_item or not is_drug else item.key,
            dose_mg=None if drop_item else dose,
            procedure=None if drop_item or is_drug else item.key,
            amount_usd=amount,
            age=age,
            sex=sex,
            specialty=specialty,
            place=place,
        )

    # ---- numbers -------------------------------------------------------------------------------------------

    def _normal_amount(self, item: Drug | Procedure) -> float:
        low, high = price_range(item)
        value = math.exp(self.rng.uniform(math.log(low), math.log(high)))
        step = 1 if value < 100 else 10 if value < 5000 else 100
        if self.rng.random() < 0.3:
            step = 0.01  # some claims bill cents
        for candidate in (round(round(value / step) * step, 2), round(value, 2)):
            if low <= candidate <= high:  # rounding may step over an edge of a narrow range
                return candidate
        return low

    def _good_dose(self, drug: Drug) -> float:
        if self.rng.random() < PAST_NORMAL_SHARE:
            return self._past_normal(
                self.dose_pool, drug.dose_min_mg, drug.dose_label_max_mg, rules.DOSE_LOW, rules.DOSE_HIGH
            )
        return self.rng.choice(self.nice_doses[drug.key])

    def _good_amount(self, item: Drug | Procedure) -> float:
        if self.rng.random() < PAST_NORMAL_SHARE:
            return self._past_normal(self.amount_pool, *price_range(item), rules.COST_LOW, rules.COST_HIGH)
        return self._normal_amount(item)

    def _past_normal(self, pool: list[float], low: float, high: float, low_line: float, high_line: float) -> float:
        """A value past the normal range [low, high] but SHORT_OF_LINE inside the rules' lines (x low, x high),
        preferably one that is normal for some other item."""
        if self.rng.random() < 0.5:
            band = (high, _round_sig(high * high_line / SHORT_OF_LINE, up=False))
        else:
            band = (_round_sig(low * low_line * SHORT_OF_LINE, up=True), low)
        candidates = pool[bisect.bisect_left(pool, band[0]) : bisect.bisect_right(pool, band[1])]
        if candidates and self.rng.random() < 0.6:
            return self.rng.choice(candidates)
        value = _round_sig(math.exp(self.rng.uniform(math.log(band[0]), math.log(band[1]))), up=True)
        return min(max(value, band[0]), band[1])

    def _bad_amount(self, item: Drug | Procedure) -> float:
        low, high = price_range(item)
        if self.rng.random() < 0.5:
            reach = (AMOUNT_HIGH[0], max(AMOUNT_HIGH[1], HIGH_AMOUNT_REACH_USD / high))
            return self._outlier(self.amount_pool, reach, high, up=True, floor=MIN_AMOUNT_USD)
        return self._outlier(self.amount_pool, AMOUNT_LOW, low, up=False, floor=MIN_AMOUNT_USD)

    def _bad_dose(self, drug: Drug) -> float:
        if self.rng.random() < 0.5:
            return self._outlier(self.dose_pool, DOSE_HIGH, drug.dose_label_max_mg, up=True, floor=MIN_DOSE_MG)
        return self._outlier(self.dose_pool, DOSE_LOW, drug.dose_min_mg, up=False, floor=MIN_DOSE_MG)

    def _outlier(self, pool: list[float], factors: tuple[float, float], base: float, up: bool, floor: float) -> float:
        """A value in [base x factors], preferably one that is normal for some other item."""
        low, high = max(floor, base * factors[0]), base * factors[1]
        if self.rng.random() < NEAR_LINE_SHARE:
            low, high = (low, min(high, low * NEAR_LINE_SPAN)) if up else (max(low, high / NEAR_LINE_SPAN), high)
        candidates = pool[bisect.bisect_left(pool, low) : bisect.bisect_right(pool, high)]
        if candidates and self.rng.random() < 0.6:
            return self.rng.choice(candidates)
        value = _round_sig(math.exp(self.rng.uniform(math.log(low), math.log(high))), up=up)
        return min(max(value, low), high) if up else max(min(value, high), low)

    # ---- patient and provider ------------------------------------------------------------------------------

    def _age(self, dx: Diagnosis, restricted: list, adult: bool, conflict: bool, wanted: bool) -> int | bool | None:
        """An age (None if left out; False if no age can serve the target)."""
        low = max(
            [dx.typical_age_min, ADULT if adult else 0] + [r.age_min for r in restricted if r.age_min is not None]
        )
        high = min([dx.typical_age_max] + [r.age_max for r in restricted if r.age_max is not None])
        if not conflict:
            if low > high:
                return False
            return self.rng.randint(low, high) if wanted else None
        bounds = [r for r in restricted if r.age_min is not None or r.age_max is not None]
        if not bounds:
            return False
        target = self.rng.choice(bounds)
        options = []
        if target.age_min is not None and target.age_min - AGE_MARGIN >= 0:
            options.append((0, target.age_min - AGE_MARGIN))
        if target.age_max is not None:
            options.append((target.age_max + AGE_MARGIN, 100))
        if not options:
            return False
        return self.rng.randint(*self.rng.choice(options))

    def _sex(self, restricted: list, conflict: bool, wanted: bool) -> str | bool | None:
        required = {r.sex for r in restricted if r.sex is not None}
        if len(required) > 1:
            return False
        if conflict:
            return {"M": "F", "F": "M"}[required.pop()] if required else False
        if not wanted:
            return None
        return required.pop() if required else self.rng.choice(("M", "F"))

    def _provider(self, dx: Diagnosis, item: Drug | Procedure, admin_kind: str | None) -> tuple[str | None, str | None]:
        rng = self.rng
        if isinstance(item, Drug):
            specialty = rng.choice(self.prescribers[dx.key]) if rng.random() < 0.15 else None
            place = rng.choice(DRUG_PLACES) if rng.random() < 0.1 else None
            return specialty, place
        if admin_kind == "specialty":
            specialty = rng.choice(self.non_billers[item.key])
        else:
            specialty = rng.choice(self.billers[item.key]) if rng.random() < 0.35 else None
        if admin_kind == "place":
            place = rng.choice(self.non_sites[item.key])
        else:
            place = rng.choice(self.sites[item.key]) if rng.random() < 0.35 else None
        return specialty, place


def generate_claims(n: int, seed: int, catalog: Catalog | None = None) -> list[Claim]:
    """n labelled claims; the same (n, seed, catalog) always gives the same claims."""
    rng = FastRandom(seed)
    generator = _Generator(catalog or load_catalog(), rng)
    targets = [TARGET_CYCLE[i % len(TARGET_CYCLE)] for i in range(n)]
    rng.shuffle(targets)
    return [generator.claim(reason, kind) for reason, kind in targets]
