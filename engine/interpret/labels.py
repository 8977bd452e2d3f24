"""A head's name and the measurements behind it, in words: composed here, and only here, from the facts
engine.interpret.ownership records (its kind, the reason it names, the heads it shares with, the numbers), for the
pages, the command line's report, TensorBoard and studies. Nothing here is saved: a run folder holds the facts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

from data.rules import REASONS
from engine.interpret.metrics import shown_change
from engine.interpret.ownership import (
    GENERALIST,
    HELPS,
    LEANS,
    LITTLE_EFFECT,
    NEEDED,
    NOT_PATCHED,
    SHARES,
    SPECIALIST,
    UNITS,
    UNOWNED,
    need,
    resampled_needs,
    twin_needs,
    unit_reason,
)
from engine.telemetry import INTERVENTIONS


class Head(Protocol):
    """What the words read of a head: engine.interpret.attribution.HeadAttribution and
    engine.telemetry.HeadSpecialization both have it."""

    kind: str
    reason: str | None
    shared_with: dict[str, tuple[int, ...]]
    rivals: tuple[int, ...]
    necessity: dict[str, float]
    ablation: dict[str, float]
    intervention: str


def named(checks: str) -> str:
    """'MEDICAL', or ADMIN's checks by name: 'place' -> 'ADMIN (place)', 'sex, age' -> 'ADMIN (sex, age)'."""
    return f"ADMIN ({checks})" if unit_reason(checks) == "ADMIN" and checks != "ADMIN" else checks


def role_label(kind: str, reason: str | None, shares: dict[str, tuple[int, ...]] | None = None) -> str:
    """A head's name on the pages: "DOSAGE specialist", "ADMIN (sex, age) specialist", "leans COST", "helps ADMIN
    (age)", "shares DOSAGE with head 2", "needed by every reason", "generalist"."""
    if kind == SPECIALIST:
        return f"{named(reason or '')} specialist"
    if kind == LEANS:
        return f"leans {named(reason or '')}"
    if kind == HELPS:
        return f"helps {named(reason or '')}"
    if kind == SHARES:
        return "shares " + ", ".join(
            f"{named(u)} with {heads_text(partners)}" for u, partners in (shares or {}).items()
        )
    if kind == NEEDED:
        classes = (reason or "").split(", ")
        return "needed by every reason" if set(REASONS) <= set(classes) else f"needed by {_classes(classes)}"
    return kind


def head_label(head: Head) -> str:
    return role_label(head.kind, head.reason, head.shared_with)


def head_evidence(head: Head) -> str:
    """The measurements behind the head's label, in a sentence or three."""
    if head.kind == NOT_PATCHED:
        return (
            "Encoder heads are not tested on twins: their output sits at the claim's own words, which twins do "
            f"not share. {_taken_away(head).capitalize()} (at the same fields), accuracy changes by "
            f"{_changes(head)}."
        )
    if not head.necessity:
        return f"Measured before twin claims were: {_taken_away(head)}, accuracy changes by {_changes(head)}."
    listed = ", ".join(f"{named(c)} {_pct(v)}" for c, v in twin_needs(head).items())
    if head.kind == SPECIALIST:
        return _specialist(head)
    if head.kind == SHARES:
        return (
            f"{_shared_sentence(head).strip()} Alone: {listed or 'no check loses more than ' + _pct(UNOWNED)}."
            f"{_resampled_sentence(head)}"
        )
    if head.kind == LEANS:
        unit = named(head.reason or "")
        carried = f" Head {joined([str(j + 1) for j in head.rivals])} carries {unit} as well." if head.rivals else ""
        return (
            f"{unit} needs it, but it is not {unit}'s alone. Needed by: {listed}."
            f"{carried}{_shared_sentence(head)}{_resampled_sentence(head)}"
        )
    if head.kind in (NEEDED, LITTLE_EFFECT):
        return _barely_twins(head)
    if head.kind == HELPS:
        return _helps(head)
    several = "Several reasons need it. " if head.kind == GENERALIST else ""
    return f"{several}Twins: {listed or 'no check needs it'}.{_shared_sentence(head)}{_resampled_sentence(head)}"


def _specialist(head: Head) -> str:
    owned = head.reason or ""
    reason, checks = unit_reason(owned), UNITS.get(owned, (owned,))
    rest = max((v for c, v in head.necessity.items() if c not in checks), default=0.0)
    other_classes = max([0.0] + [v for c, v in head.ablation.items() if c != reason and not math.isnan(v)])
    return (
        f"Only {named(owned)} needs it: {_pct(need(head.necessity, owned))} of what tells its claims from their "
        f"repaired twins goes when it sees the twin; no other check loses more than {_pct(max(rest, 0.0))} of its "
        f"evidence, and {_taken_away(head)} no other class loses more than {_pct(other_classes)} of its "
        "accuracy."
    )


def _barely_twins(head: Head) -> str:
    most = max(head.necessity.values(), default=0.0)
    found = f"Twin claims barely need it: at most {_pct(max(most, 0.0))} of any check's evidence goes with it."
    resampled = resampled_needs(head)
    if resampled:
        return (
            f"{found} Yet {_taken_away(head)}, accuracy drops by {_losses(resampled)}: it carries something "
            "those claims need that a claim and its twin share (the billed item, say)."
        )
    return f"{found} {_taken_away(head).capitalize()}, no class loses more than {_pct(UNOWNED)} of its accuracy."


def _helps(head: Head) -> str:
    twins = twin_needs(head)
    checks = [c for c in (head.reason or "").split(", ") if c in twins]
    if not checks:
        return f"Only {named(head.reason or '')} needs it, and only in part.{_resampled_sentence(head)}"
    shares = (
        " and ".join(f"{_pct(twins[c])} of {c}'s" for c in checks)
        if len(checks) > 1
        else (f"{_pct(twins[checks[0]])} of its")
    )
    return (
        f"Only {named(', '.join(checks))} needs it, and only in part: {shares} evidence goes with it."
        f"{_shared_sentence(head)}{_resampled_sentence(head)}"
    )


def _taken_away(head: Head) -> str:
    """'when it sees what it saw on claims of the same kind', as the head's ablation took it away."""
    return f"when it {INTERVENTIONS.get(head.intervention, head.intervention)}"


def _changes(head: Head) -> str:
    return ", ".join(f"{c} {shown_change(-v):+.0%}" for c, v in head.ablation.items()) or "nothing measured"


def heads_text(heads: Sequence[int]) -> str:
    """'head 2' or 'heads 1 and 3' for 0-based indices."""
    return ("head " if len(heads) == 1 else "heads ") + joined([str(j + 1) for j in heads])


def joined(words: Sequence[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _classes(classes: Sequence[str]) -> str:
    return joined(["valid claims" if c == "VALID" else c for c in classes])


def _pct(value: float) -> str:
    return f"{value:.0%}"


def _losses(needs: dict[str, float]) -> str:
    return ", ".join(f"{_classes([c])} {_pct(v)}" for c, v in needs.items())


def _resampled_sentence(head: Head) -> str:
    """' When it sees ..., accuracy drops by DOSAGE 40%, COST 25%.' for the classes above UNOWNED, or ''."""
    needs = resampled_needs(head)
    return f" {_taken_away(head).capitalize()}, accuracy drops by {_losses(needs)}." if needs else ""


def _shared_sentence(head: Head) -> str:
    if not head.shared_with:
        return ""
    told = "; ".join(f"{named(u)} with {heads_text(p)}" for u, p in head.shared_with.items())
    return (
        f" It shares {told}: removed together, the pair takes much more than either alone, so each can stand in "
        "for the other."
    )
