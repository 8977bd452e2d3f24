"""What the engine answers about one claim (Prediction): the verdict, reason and confidence per class, what was read
and what the rules checker says, each service line's own answer, and why the model's answer is not given as the
verdict when it rests on a part that was not read; and the record as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from data.reading import Reading, Refusal
from data.vocabulary import Token


@dataclass(frozen=True)
class Prediction:
    text: str
    verdict: str | None = None
    reason: str | None = None
    confidence: float | None = None
    probabilities: dict[str, float] = field(default_factory=dict)  # outcome (CLASSES) -> probability
    tokens: tuple[Token, ...] = ()
    attention: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (H, Tq, Tk)
    ablation: dict[str, tuple[str, ...]] = field(default_factory=dict)  # name -> outcome with each head resampled
    # what the rules checker says on the fields it read: (verdict, reason), or (CANNOT_CHECK, NONE)
    rules: tuple[str, str] | None = None
    rule_findings: tuple[str, ...] = ()  # each rule the claim breaks, "REASON: why"
    warnings: tuple[str, ...] = ()
    truncated: bool = False
    error: str | None = None
    step: int | None = None
    reading: Reading | None = None  # what the claim was read as, and what was not
    # Why the model's answer (verdict, reason, confidence above) is not given as the verdict: it rests on a part of
    # the claim that was not read. None when it is the verdict.
    refusal: Refusal | None = None
    # A claim of several billed items: each service line judged as a claim of its own (the verdict above is the
    # worst line's, the attention and ablation are those of `figured`), and why no line is judged on a price, if so.
    lines: tuple[Prediction, ...] = ()
    lines_note: str | None = None

    @property
    def outcome(self) -> str | None:
        return None if self.verdict is None else verdict_to_outcome(self.verdict, self.reason)

    @property
    def judged(self) -> bool:
        """The model's answer is the verdict: no error, and nothing it rests on was left unread."""
        return self.error is None and self.refusal is None

    def to_json(self) -> dict:
        reading = {"reading": self.reading.to_json()} if self.reading else {}
        if self.error:
            return {"text": self.text, "error": self.error, **reading}
        said = {"verdict": self.verdict, "reason": self.reason, "confidence": round(self.confidence or 0.0, 4)}
        answer = said if self.judged else {"verdict": None, "reason": None, "confidence": None, "model_said": said}
        lines = (
            {"lines": [line.line_json() for line in self.lines], "lines_note": self.lines_note} if self.lines else {}
        )
        return {
            "text": self.text,
            **answer,
            "cannot_judge": self.refusal.to_json() if self.refusal else None,
            **lines,
            **reading,
            "warnings": list(self.warnings),
        }

    def line_json(self) -> dict:
        """One service line: its words, the terms read in it, its answer, or why it cannot be judged."""
        terms = [t.to_json() for t in self.reading.read] if self.reading else []
        said = self.judged and self.verdict is not None
        return {
            "text": self.text,
            "terms": terms,
            "verdict": self.verdict if said else None,
            "reason": self.reason if said else None,
            "confidence": round(self.confidence, 4) if said and self.confidence is not None else None,
            "cannot_judge": self.refusal.to_json() if self.refusal else None,
            **({"rules": list(self.rules)} if self.rules else {}),
        }

    @property
    def figured(self) -> Prediction:
        """The prediction whose attention and ablation are shown: the claim's, or its first line the model
        answered."""
        return next((line for line in self.lines if line.verdict is not None), self)


def outcome_to_verdict(outcome: str) -> tuple[str, str]:
    return ("VALID", "NONE") if outcome == "VALID" else ("INVALID", outcome)


def verdict_to_outcome(verdict: str, reason: str) -> str:
    """("VALID", "NONE") -> "VALID"; ("INVALID", reason) -> reason."""
    return "VALID" if verdict == "VALID" else reason
