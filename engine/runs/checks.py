"""The checks a value read from a run folder passes before anything uses it (a run folder may be hostile), and
RunError, the refusal in plain words of a folder that fails them. Below every reader of a run's files, so that
engine.runs.reading, the status facts (engine.runs.ending) and the older formats (engine.runs.formats) share them."""

from __future__ import annotations

from typing import Any

from engine.runs.layout import LARGEST_WHOLE

MAX_HEADS = 64  # the most heads one attention of a saved run may have


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


def table(value: Any) -> dict:
    if not isinstance(value, dict):
        raise ValueError("not a table")
    return value


def head_indices(value: Any) -> tuple[int, ...]:
    """Heads of one attention, by their 0-based index."""
    if not isinstance(value, list | tuple) or not all(0 <= whole(v) < MAX_HEADS for v in value):
        raise ValueError("not a list of heads")
    return tuple(value)


def shared_with(value: Any) -> dict[str, tuple[int, ...]]:
    """A head's partners as saved: reason or ADMIN family -> the other heads that carry it with this one."""
    return {text(unit): head_indices(heads) for unit, heads in table(value).items()}
