"""The checks a value read from a run folder passes before anything uses it (a run folder may be hostile), and
RunError, the refusal in plain words of a folder that fails them. Below every reader of a run's files, so that
engine.runs.reading, the status facts (engine.runs.ending) and the older formats (engine.runs.formats) share them."""

from __future__ import annotations

from typing import Any

from engine.runs.layout import LARGEST_WHOLE


class RunError(ValueError):
    """A run folder, run id or checkpoint that cannot be used; the message says why in plain words."""


def whole(value: Any) -> int:
    """A JSON whole number a run could write; ValueError for anything else (true, "3", 3.5, 10**40)."""
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > LARGEST_WHOLE:
        raise ValueError("not a whole number a run writes")
    return value


def number(value: Any) -> float:
    """A JSON number, or null stored for NaN/infinity; ValueError for anything else."""
    if value is None:
        return float("nan")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not a number")
    return float(value)


def text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not text")
    return value


def numbers(value: Any) -> dict[str, float]:
    if not isinstance(value, dict):
        raise ValueError("not a table of numbers")
    return {text(k): number(v) for k, v in value.items()}
