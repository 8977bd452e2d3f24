"""The heads' measurement the pages and the report tell, and how far the run had got when it was taken."""

from __future__ import annotations

from dataclasses import dataclass, fields

from engine.interpret.specialization import ANALYSIS_CLAIMS
from engine.telemetry import HeadSpecialization, Snapshot, SpecializationPoint


@dataclass(frozen=True)
class Measurement:
    """The heads' specialization at one step: from `python -m engine analyze` on a saved run, or the latest one the
    trainer took while training."""

    point: SpecializationPoint
    claims: int
    source: str  # "analyze" or "training"

    @property
    def cross(self) -> tuple[HeadSpecialization, ...]:
        return next((heads for name, heads in self.point.heads.items() if name.endswith(".cross")), ())


def measurement_from_report(report: dict) -> Measurement:
    """engine.reports.analyze's JSON as a Measurement (the pages name heads from it as training's records do)."""
    known = {f.name for f in fields(HeadSpecialization)}
    heads = {
        name: tuple(HeadSpecialization(**{k: v for k, v in h.items() if k in known}) for h in specs)
        for name, specs in report["heads"].items()
    }
    return Measurement(SpecializationPoint(int(report["step"] or 0), heads), int(report["claims"]), "analyze")


def latest_measurement(snap: Snapshot) -> Measurement | None:
    return Measurement(snap.specialization[-1], ANALYSIS_CLAIMS, "training") if snap.specialization else None


@dataclass(frozen=True)
class Unfinished:
    """Where a run that has not reached its last step stands: its heads can still change (or could have)."""

    step: int
    total: int
    stopped: bool  # training ended early; else it is still going

    @property
    def when(self) -> str:
        """'So far, at step 177 of 3,500' or 'At step 177 of 3,500, where training was stopped'."""
        where = f"at step {self.step:,} of {self.total:,}"
        return f"{where.capitalize()}, where training was stopped" if self.stopped else f"So far, {where}"


def unfinished(snap: Snapshot, step: int) -> Unfinished | None:
    """How far a run measured at `step` had got, when it is training or was stopped before its last step; None for a
    run that trained to the end (its verdict is final)."""
    if snap.active:
        return Unfinished(step, max(snap.total_steps, step), stopped=False)
    if snap.status != "finished" and step < snap.total_steps:
        return Unfinished(step, snap.total_steps, stopped=True)
    return None
