"""What the causal measurements (engine.attribution) make of each head.

A head **owns** a reason when the reason depends on it (necessity >= OWNED), no other reason or ADMIN check does
(<= UNOWNED each), valid claims do not (mean-ablated, VALID accuracy drops by <= UNOWNED), and no other head
passes for the same reason; it is then that reason's **specialist**. Otherwise it **leans** to a reason that
needs it when that reason is the only one at OWNED or more, is a **generalist** when checks of several reasons
need it (above UNOWNED), **helps** the one check, or the checks of one reason (ADMIN's sex and age), that need it in
part, and has **little effect** when none does.
Encoder heads are mean-ablated only (not patched).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from engine.attribution import CHECKS, HeadAttribution, reason_of
from engine.metrics import shown_change
from engine.model import REASONS

OWNED = 0.5  # a reason depends on a head: patching it away removes at least half the gap between the twins
UNOWNED = 0.2  # the most any other reason, check or VALID may depend on a head that owns one


def owners(heads: Sequence[HeadAttribution]) -> tuple[HeadAttribution, ...]:
    """The heads with `owns`, `label` and `evidence` set by the rule in the module's docstring."""
    claims = [_candidate(h) for h in heads]
    owned = [r if r is not None and claims.count(r) == 1 else None for r in claims]
    return tuple(replace(h, owns=r, **_described(i, h, r, claims)) for i, (h, r) in enumerate(zip(heads, owned,
                                                                                                   strict=True)))


SPECIALIST, LEANS, GENERALIST, HELPS, LITTLE_EFFECT, NOT_PATCHED = (
    "specialist", "leans", "generalist", "helps", "little effect", "not patched")


def role_label(kind: str, reason: str | None) -> str:
    """A head's name on the pages: "DOSAGE specialist", "leans COST", "helps ADMIN (age)", "generalist"."""
    if kind == SPECIALIST:
        return f"{reason} specialist"
    if kind == LEANS:
        return f"leans {reason}"
    return f"helps {_named(reason or '')}" if kind == HELPS else kind


def _strong(head: HeadAttribution) -> list[str]:
    return [r for r in REASONS if head.reason_necessity(r) >= OWNED]


def _candidate(head: HeadAttribution) -> str | None:
    strong = _strong(head)
    if len(strong) != 1 or head.valid_drop > UNOWNED:
        return None
    others = [c for c in CHECKS if reason_of(c) != strong[0]]
    return strong[0] if all(head.necessity[c] <= UNOWNED for c in others) else None


def _named(checks: str) -> str:
    """'MEDICAL', or ADMIN's checks by name: 'place' -> 'ADMIN (place)', 'sex, age' -> 'ADMIN (sex, age)'."""
    return f"ADMIN ({checks})" if reason_of(checks.split(", ")[0]) == "ADMIN" else checks


def _pct(value: float) -> str:
    return f"{value:.0%}"


def _role(kind: str, reason: str | None = None, **evidence: str) -> dict[str, str | None]:
    return {"kind": kind, "reason": reason, "label": role_label(kind, reason), **evidence}


def _ablated_only(head: HeadAttribution) -> dict[str, str | None]:
    changes = ", ".join(f"{c} {shown_change(-v):+.0%}" for c, v in head.ablation.items())
    return _role(NOT_PATCHED, evidence= "Encoder heads are measured only by replacing their output with its "
            f"average; accuracy then changes by {changes}.")


def _described(index: int, head: HeadAttribution, owns: str | None, claims: list[str | None]) -> dict[str, str | None]:
    """The head's label and, in words, the measurement behind it."""
    if not head.necessity:
        return _ablated_only(head)
    needing = sorted(((c, v) for c, v in head.necessity.items() if v > UNOWNED), key=lambda cv: -cv[1])
    listed = ", ".join(f"{_named(c)} {_pct(v)}" for c, v in needing)
    valid = (f" Without it, {_pct(head.valid_drop)} of valid claims get flagged." if head.valid_drop > UNOWNED
             else "")
    if owns is not None:
        rest = max((v for c, v in head.necessity.items() if reason_of(c) != owns), default=0.0)
        return _role(SPECIALIST, owns,
                     evidence=f"Only {owns} needs it: {_pct(head.reason_necessity(owns))} of what tells {owns} claims "
                            f"from their repaired twins goes when it sees the twin; no other check loses more than "
                            f"{_pct(rest)}, and valid claims lose {_pct(max(head.valid_drop, 0.0))} without it.")
    strong = _strong(head)
    if len(strong) == 1:
        rivals = [str(j + 1) for j, r in enumerate(claims) if r == strong[0] and j != index]
        shared = f" Head {', '.join(rivals)} carries {strong[0]} as well." if rivals else ""
        return _role(LEANS, strong[0],
                     evidence=f"{strong[0]} needs it, but not it alone. Needed by: {listed}.{shared}{valid}")
    if len(strong) > 1 or len({reason_of(c) for c, _ in needing}) > 1:
        return _role(GENERALIST, evidence=f"Checks of several reasons need it: {listed}.{valid}")
    if needing:
        share = dict(needing)
        checks = [c for c in CHECKS if c in share]
        shares = " and ".join(f"{_pct(share[c])} of {c}'s" for c in checks) if len(checks) > 1 else (
            f"{_pct(share[checks[0]])} of its")
        named = _named(", ".join(checks))
        return _role(HELPS, ", ".join(checks),
                     evidence=f"Only {named} needs it, and only in part: {shares} evidence goes with it.{valid}")
    most = max(head.necessity.values(), default=0.0)
    return _role(LITTLE_EFFECT, evidence=f"No check needs it: at most {_pct(max(most, 0.0))} of any check's evidence "
                                         f"goes with it.{valid}")
