"""A run's records as one metrics table, and every CSV Headwatch writes, made safe to open in a spreadsheet.

A spreadsheet runs a cell that starts with = + - @ (or a tab or carriage return, which some strip first) as a
formula: `=HYPERLINK(...)` in an imported claim would become a live link. As OWASP advises for CSV injection, such
text cells get a leading apostrophe, which spreadsheets show as plain text; numbers are written as numbers.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from data.rules import CLASSES
from engine.runs.reading import (
    RECORDS,
    read_config,
    read_records,
)
from engine.runs.replay import HeadCounts, fits_heads
from engine.telemetry import OPTIM_MEASURES, HeadSpecialization

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_cell(value: object) -> object:
    """`value` as it may be written to a CSV: text that a spreadsheet would run as a formula is prefixed with '."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_bytes(header: Sequence[str], rows: Iterable[Sequence[object]]) -> bytes:
    """UTF-8 CSV of `rows` under `header`, every text cell neutralised."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([spreadsheet_cell(name) for name in header])
    writer.writerows([spreadsheet_cell(cell) for cell in row] for row in rows)
    return buffer.getvalue().encode("utf-8")


OWN_COLUMNS = ("step", "seconds", "train_loss")  # the first columns of every metrics table

OPTIM_COLUMNS = tuple(OPTIM_MEASURES)
ROLE_COLUMNS = ("kind", "reason", "shares with")  # per cross-attention head, the last columns

def metrics_table(folder: Path) -> tuple[list[str], list[list[object]]]:
    """Every recorded step of a saved run, one row each: the training loss; held-out losses and accuracies where
    it was evaluated; each attention head's Adam statistics where they were taken; each cross-attention head's
    name where the heads were measured. Blank where a step has no such record."""
    heads = HeadCounts.of_run(read_config(folder))
    rows: dict[int, dict[str, object]] = {}
    for kind, point in read_records(folder, RECORDS):
        if not fits_heads(kind, point, heads):
            continue
        if kind == "step":
            rows.setdefault(point.step, {}).update(seconds=round(point.seconds, 2), train_loss=point.loss)
        else:
            rows.setdefault(point.step, {}).update(_columns(kind, point))
    header = list(OWN_COLUMNS)
    header += sorted({k for row in rows.values() for k in row} - set(header), key=_column_order)
    return header, [[step, *(row.get(k) for k in header[1:])] for step, row in sorted(rows.items())]

def _columns(kind: str, point: Any) -> dict[str, object]:
    if kind == "eval":
        return {"seconds": round(point.seconds, 2), "heldout_loss": point.heldout_loss,
                "train_accuracy": point.train_accuracy, "heldout_accuracy": point.heldout_accuracy,
                **{f"heldout_{c}": v for c, v in point.heldout_per_class.items()}}
    if kind == "metrics":  # a loop's own name that is one of the table's gets "(yours)": neither hides the other
        return {f"{k} (yours)" if k in OWN_COLUMNS else k: v for k, v in point.values.items()}
    if kind == "optim":
        return {f"{name} head {h + 1} {stat}": getattr(stats, stat) for name, heads in point.heads.items()
                for h, stats in enumerate(heads) for stat in OPTIM_COLUMNS}
    return {f"{name} head {h + 1} {fact}": value for name, heads in point.heads.items() if name.endswith(".cross")
            for h, head in enumerate(heads) for fact, value in _role(head).items()}


def _role(head: HeadSpecialization) -> dict[str, object]:
    """What the head is (engine.interpret.ownership's kind), the reason it names, and the heads it shares with."""
    shares = "; ".join(f"{unit}: {' '.join(str(j + 1) for j in partners)}" for unit, partners in head.shared_with.items())
    return dict(zip(ROLE_COLUMNS, (head.kind, head.reason, shares or None), strict=True))

EVAL_COLUMNS = ("heldout_loss", "train_accuracy", "heldout_accuracy", *(f"heldout_{c}" for c in CLASSES))

def _column_order(name: str) -> tuple[int, int, str]:
    """Evaluation columns first (in EVAL_COLUMNS' order), then optimizer statistics, then head names."""
    if name in EVAL_COLUMNS:
        return 0, EVAL_COLUMNS.index(name), name
    return (2 if name.endswith(tuple(f" {column}" for column in ROLE_COLUMNS)) else 1), 0, name
