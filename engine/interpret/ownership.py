"""What the causal measurements (engine.interpret.attribution) make of each head, using both of them, so that a label
never contradicts the numbers beside it.

Two measurements: **twins** (what share of a check's evidence goes when the head sees what it saw on the claim's
repaired twin: necessity per check) and **resampling** (the accuracy a class loses when the head sees what it saw on
other claims of the same class). Twins cannot see a head that reads what twins share (the billed item, say);
resampling can. A head can be the specialist of a reason, or of one of ADMIN's two families of checks (patient: sex
and age; provider: specialty and place), which count as ADMIN.

A head is the **specialist** of a reason or family when that reason or family needs it (necessity >= OWNED, by its
checks' mean), no check outside it does (<= UNOWNED each), no other class loses more than UNOWNED when the head is
resampled (valid claims included), no other head passes for it, and it shares no reason with another head. Heads
**share** a reason or family when each can stand in for the other: removed as a pair they take at least OWNED of its
evidence (or more than UNOWNED of its accuracy), at least UNOWNED more than either takes alone. A head that is not a
specialist **shares** what it shares when no other reason needs it; **leans** to the one reason (or family) that
needs it at OWNED or more; has **little effect** when neither measurement finds anything above UNOWNED; is **needed
by** the classes that lose more than UNOWNED when it is resampled, when twins find nothing; is a **generalist** when
several reasons need it (by either measurement); and else **helps** the one check, or the checks of one reason
(ADMIN's sex and age), that need it in part.
Encoder heads are only resampled (**not patched**: their outputs sit at the claim's own words, which twins do not
share), and a head resampled within its class keeps what the class has in common, so "little effect" would claim
more than resampling alone can show.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from data.generator import ADMIN_KINDS
from data.rules import REASONS
from engine.interpret.attribution import HeadAttribution
from engine.interpret.pairs import CHECKS, reason_of

OWNED = 0.5  # a reason depends on a head: patching it away removes at least half the gap between the twins
UNOWNED = 0.2  # the most any other reason, check or class may depend on a head that owns one

# What a head can own: a reason, or one of ADMIN's two families of checks; the families first (the closer name)
UNITS: dict[str, tuple[str, ...]] = {
    "MEDICAL": ("MEDICAL",),
    "DOSAGE": ("DOSAGE",),
    "COST": ("COST",),
    "sex, age": ("sex", "age"),
    "specialty, place": ("specialty", "place"),
    "ADMIN": ADMIN_KINDS,
}
FINEST = ("MEDICAL", "DOSAGE", "COST", "sex, age", "specialty, place")  # the units selectivity compares

KINDS = ("specialist", "shares", "leans", "generalist", "helps", "needed by", "little effect", "not patched")
SPECIALIST, SHARES, LEANS, GENERALIST, HELPS, NEEDED, LITTLE_EFFECT, NOT_PATCHED = KINDS


def unit_reason(unit: str) -> str:
    """The reason a unit ('DOSAGE', 'sex, age', or any checks 'place') counts as: 'DOSAGE', 'ADMIN'."""
    return reason_of(unit.split(", ")[0])


def need(necessity: dict[str, float], unit: str) -> float:
    """The mean share of a unit's checks' evidence that goes with a head (or heads): `necessity` per check."""
    checks = UNITS.get(unit) or tuple(unit.split(", "))
    return sum(necessity.get(c, 0.0) for c in checks) / len(checks)


def selectivity(head: HeadAttribution) -> float | None:
    """What the reason (or ADMIN family) that needs the head most needs of it, minus the most any other reason
    needs: near 1 for a clean specialist, near 0 or below for a head several reasons share. None without twins."""
    if not head.necessity:
        return None
    top = max(FINEST, key=lambda u: need(head.necessity, u))
    others = [need(head.necessity, u) for u in FINEST if unit_reason(u) != unit_reason(top)]
    return need(head.necessity, top) - max(others)


def owners(heads: Sequence[HeadAttribution]) -> tuple[HeadAttribution, ...]:
    """The heads with `owns`, `kind`, `reason`, `rivals`, `selectivity` and `shared_with` set by the rule in the
    module's docstring (engine.interpret.labels words them)."""
    shares = [_shares(i, heads) for i in range(len(heads))]
    candidates = [_candidate(h) for h in heads]
    labelled = []
    for index, (head, unit, shared) in enumerate(zip(heads, candidates, shares, strict=True)):
        rivals = [j for j, other in enumerate(candidates) if j != index and other and unit and _overlap(unit, other)]
        owned = unit if unit is not None and not rivals and not shared else None
        head = replace(head, selectivity=selectivity(head), shared_with=shared)
        labelled.append(replace(head, owns=owned and unit_reason(owned), rivals=tuple(rivals), **_role(head, owned)))
    return tuple(labelled)


def _overlap(unit: str, other: str) -> bool:
    return bool(set(UNITS.get(unit, (unit,))) & set(UNITS.get(other, (other,))))


def _shares(index: int, heads: Sequence[HeadAttribution]) -> dict[str, tuple[int, ...]]:
    """Reason or family -> the heads that carry it together with this one, each able to stand in for the other:
    removed as a pair they take at least OWNED of its evidence (or more than UNOWNED of its accuracy), and at least
    UNOWNED more than either takes alone."""
    head, shared = heads[index], {}
    for partner, other in enumerate(heads):
        key = str(partner)
        if partner == index or key not in head.pair_ablation:
            continue
        together, dropped = head.pair_necessity.get(key, {}), head.pair_ablation[key]
        units = [
            u
            for u in FINEST
            if together and _backup(need(together, u), need(head.necessity, u), need(other.necessity, u), OWNED)
        ]
        units += [
            r
            for r in REASONS
            if r not in units
            and _backup(dropped.get(r, 0.0), head.ablation.get(r, 0.0), other.ablation.get(r, 0.0), UNOWNED)
        ]
        for unit in units:
            shared[unit] = (*shared.get(unit, ()), partner)
    return shared


def _backup(together: float, alone: float, other_alone: float, floor: float) -> bool:
    return together >= floor and together - max(alone, other_alone) >= UNOWNED


def resampled_needs(head: HeadAttribution) -> dict[str, float]:
    """Class -> accuracy lost when the head is resampled, for the classes that lose more than UNOWNED, most first."""
    return dict(sorted(((c, v) for c, v in head.ablation.items() if v > UNOWNED), key=lambda cv: -cv[1]))


def twin_needs(head: HeadAttribution) -> dict[str, float]:
    """Check -> share of its evidence that goes with the head, for the checks above UNOWNED, most first."""
    return dict(sorted(((c, v) for c, v in head.necessity.items() if v > UNOWNED), key=lambda cv: -cv[1]))


def _candidate(head: HeadAttribution) -> str | None:
    """The unit (reason or ADMIN family) the head passes the specialist test for on its own numbers, if any."""
    if not head.necessity:
        return None
    for unit, checks in UNITS.items():
        others = [c for c in CHECKS if c not in checks]
        kinds = [k for k in ADMIN_KINDS if k not in checks] if unit_reason(unit) == "ADMIN" else []
        if (
            need(head.necessity, unit) >= OWNED
            and all(head.necessity[c] <= UNOWNED for c in others)
            and all(not v > UNOWNED for c, v in head.ablation.items() if c != unit_reason(unit))
            and all(not head.admin_kinds.get(k, 0.0) > UNOWNED for k in kinds)
        ):
            return unit
    return None


def _role(head: HeadAttribution, owned: str | None) -> dict[str, str | None]:
    """The head's kind, and the reason, family or checks (or, for NEEDED, classes) it names."""
    if not head.necessity:
        return {"kind": NOT_PATCHED, "reason": None}
    if owned is not None:
        return {"kind": SPECIALIST, "reason": owned}
    twins, resampled = twin_needs(head), resampled_needs(head)
    reasons = {reason_of(c) for c in twins} | {c for c in resampled if c != "VALID"}
    if head.shared_with and reasons <= {unit_reason(u) for u in head.shared_with}:
        return {"kind": SHARES, "reason": next(iter(head.shared_with))}
    strong = [u for u in FINEST if need(head.necessity, u) >= OWNED]
    if strong and len({unit_reason(u) for u in strong}) == 1:
        return {"kind": LEANS, "reason": strong[0] if len(strong) == 1 else unit_reason(strong[0])}
    if not twins:
        return (
            {"kind": NEEDED, "reason": ", ".join(resampled)} if resampled else {"kind": LITTLE_EFFECT, "reason": None}
        )
    if len(reasons) > 1:
        return {"kind": GENERALIST, "reason": None}
    return {"kind": HELPS, "reason": ", ".join(c for c in CHECKS if c in twins)}
