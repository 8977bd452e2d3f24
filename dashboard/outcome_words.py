"""An answer as the pages write it, the model's or the rules checker's: 'VALID', 'INVALID: COST', 'cannot judge'."""

from __future__ import annotations

from data import rules
from engine.interpret.prediction import Prediction, verdict_to_outcome

CANT_TELL = "can't tell"
CANNOT_JUDGE = "cannot judge"  # the model's answer rests on words that were not read
CANNOT_CHECK = "cannot check"  # so does the rules checker's


def outcome_text(outcome: str | None) -> str:
    """'VALID', 'INVALID: COST', or CANT_TELL when there is no answer."""
    if outcome is None:
        return CANT_TELL
    return "VALID" if outcome == "VALID" else f"INVALID: {outcome}"


def verdict_text(verdict: str | None, reason: str | None) -> str:
    """outcome_text of a (verdict, reason) pair, as the model or the rules checker give it; CANNOT_CHECK for the
    rules checker's data.rules.CANNOT_CHECK."""
    if verdict == rules.CANNOT_CHECK:
        return CANNOT_CHECK
    return outcome_text(verdict_to_outcome(verdict, reason or "NONE") if verdict else None)


def said_text(p: Prediction) -> str:
    """What the model's answer is, in a cell: the verdict, or CANNOT_JUDGE when it rests on words not read."""
    return verdict_text(p.verdict, p.reason) if p.refusal is None else CANNOT_JUDGE
