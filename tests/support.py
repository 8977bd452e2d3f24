"""Helpers shared by the tests."""

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from data.rules import REASONS
from engine.interpret.pairs import CHECKS
from engine.interpret.probes import FIELDS, ProbeTable
from engine.reports.study_results import STUDY, SeedResult
from engine.runs.formats import role_from_label
from engine.training.presets import PRESETS

MADE = datetime(2026, 1, 2, 12, tzinfo=UTC).timestamp()  # when a hand-made study was last written


class Heard:
    """An observer keeping every event of one kind that a run or a watcher emits, as it emits it."""

    def __init__(self, kind: type) -> None:
        self.kind = kind
        self.events: list = []

    def hear(self, event: object) -> None:
        if isinstance(event, self.kind):
            self.events.append(event)


def wait_for(condition: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def probe_table_with(encoder: dict[str, dict[str, float]], step: int = 100) -> ProbeTable:
    """Every cell 0.6 on both sources, but for the encoder's cells given."""

    def cells(given: dict[str, dict[str, float]]) -> dict:
        return {reason: {field: given.get(reason, {}).get(field, 0.6) for field in FIELDS} for reason in REASONS}

    return ProbeTable(
        step,
        {"encoder": cells(encoder), "embeddings": cells({})},
        {reason: dict.fromkeys(FIELDS, 300) for reason in REASONS},
        seconds=0.5,
    )


def seed_result(number: int, owns: tuple[str | None, ...] = (None, None, None, None)) -> SeedResult:
    """One seed's measured heads as a study records them: a specialist of each reason in `owns`, else little effect."""
    labels = tuple(f"{o} specialist" if o else "little effect" for o in owns)
    return labelled_seed(number, labels, owns, tuple(dict.fromkeys(CHECKS, 0.0) for _ in owns), accuracy=0.99)


def labelled_seed(
    number: int,
    labels: tuple[str, ...],
    owns: tuple[str | None, ...],
    necessity: tuple[dict[str, float], ...],
    accuracy: float = 0.9,
    steps: int = 3500,
) -> SeedResult:
    """A seed whose heads are what their labels say ("leans COST", "DOSAGE specialist", "shares COST with head 2")."""
    roles = [role_from_label(label) for label in labels]
    return SeedResult(
        number,
        steps,
        accuracy,
        tuple(r["kind"] for r in roles),
        tuple(r["reason"] for r in roles),
        tuple(r["shared_with"] for r in roles),
        owns,
        necessity,
    )


def make_study(
    folder: Path,
    train: list[str],
    seeds: list[int],
    measured: list[SeedResult],
    config: dict | None = None,
    made: float = MADE,
) -> Path:
    """A study folder as `python -m engine study` leaves it: study.json (last written at `made`), and each seed's
    run config (the default recipe's, unless given)."""
    for number in seeds:
        (folder / f"seed-{number}").mkdir(parents=True)
        settings = (config or PRESETS["default"].to_dict()) | {"seed": number}
        (folder / f"seed-{number}" / "config.json").write_text(json.dumps(settings))
    (folder / STUDY).write_text(
        json.dumps(
            {"recipe": {"train": train, "seeds": seeds}, "results": [asdict(r) for r in measured], "failures": {}}
        )
    )
    os.utime(folder / STUDY, (made, made))
    return folder
