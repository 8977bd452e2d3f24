"""Saved runs as the Runs page shows them: a row per run with its heads in words, what is wrong with a damaged one,
and two runs' numbers side by side. Pure: run summaries and snapshots in, rows and markdown out."""

from __future__ import annotations

import time

from dashboard import summaries
from dashboard.untrusted import markdown_text
from engine.interpret.labels import head_label
from engine.runs.listing import RunSummary
from engine.telemetry import Snapshot


def run_rows(runs: list[RunSummary]) -> list[dict]:
    return [
        {
            "Started": time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started)),
            "Run": r.run_id,
            "Recipe": r.preset if r.watched_heads is None else "your own model",
            "Optimizer": r.optimizer,
            "Seed": r.seed if r.watched_heads is None else None,  # a watched loop's seed is its own, unknown here
            "Steps": r.step,
            "Status": r.status,
            "Accuracy": r.accuracy,
            "Heads": heads_cell(r),
        }
        for r in runs
    ]


def heads_cell(run: RunSummary) -> str:
    """Headwatch's own runs: what each cross-attention head was found to do (not named for a run that learned
    nothing). A watched model's: what was recorded."""
    if run.watched_heads is not None:
        return watched_heads_text(run.watched_heads)
    if not run.learned:
        return "not named: it did no better than answering its commonest outcome to every claim"
    return "; ".join(head_label(h) for h in run.heads) or "not measured"


def watched_heads_text(heads: tuple[int, ...]) -> str:
    if not heads:
        return "no attention found: the loss and your metrics only"
    low, high = min(heads), max(heads)
    modules = f"{len(heads)} attention module{'s' if len(heads) != 1 else ''}"
    return f"{modules}, {low if low == high else f'{low} to {high}'} heads each"


def damage_text(runs: list[RunSummary]) -> str | None:
    """Every damaged run, or one saved in a format this version does not read, with what is wrong with it, in full
    (a table column would cut it off)."""
    damaged = [
        f"- **{markdown_text(r.run_id)}**: {markdown_text(r.problem or r.note)}" for r in runs if r.problem or r.note
    ]
    if not damaged:
        return None
    return "Runs with a problem (the ones that cannot be opened are not offered below):\n" + "\n".join(damaged)


def compared_row(letter: str, snap: Snapshot, claims: bool) -> dict:
    """A run's numbers; the claims model's held-out accuracy only when both runs are claims runs (someone's own
    model, recorded by headwatch.watch, has only its loss)."""
    row = {"": letter, "Run": snap.run_id, "Settings": summaries.config_text(snap.config)}
    if claims:
        last, reached = snap.latest_eval, snap.first_reaching(0.95)
        row |= {
            "Final held-out accuracy": last.heldout_accuracy if last else None,
            "Reached 95% at step": f"{reached.step:,}" if reached is not None else "not reached",
        }
    else:
        row |= {"Steps": snap.step, "Last training loss": snap.loss.values[-1] if snap.loss.values else None}
    return row | {"Training time": summaries.duration(snap.seconds)}
