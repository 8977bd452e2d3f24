"""A study's results: each seed's run measured (SeedResult), what the seeds have in common (`summarize`: heads
matched across seeds, a bootstrap interval of the specialists per seed), and study.json read back with every value
checked. engine.reports.study runs the study that records them."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from data.rules import REASONS
from engine.interpret.labels import role_label
from engine.interpret.ownership import LEANS, unit_reason
from engine.reports.analyze import analyze_run
from engine.runs.checks import shared_with
from engine.runs.formats import role_from_label
from engine.runs.listing import summarize as summarize_run
from engine.runs.reading import RunError, number, numbers, read_object, read_status, text, whole
from engine.task.claims_model import CROSS
from engine.telemetry import at_most_chance

STUDY = "study.json"
BOOTSTRAP_RESAMPLES = 2000
MAX_MATCHED_HEADS = 6  # heads matched across seeds by trying every pairing: 6! = 720 per seed


@dataclass(frozen=True)
class SeedResult:
    seed: int
    steps: int
    accuracy: float
    kinds: tuple[str, ...]  # per cross-attention head: what it is (engine.interpret.ownership)
    reasons: tuple[str | None, ...]  # per head: the reason, ADMIN family or checks its kind names
    shared_with: tuple[dict[str, tuple[int, ...]], ...]  # per head: reason or family -> the heads it shares it with
    owns: tuple[str | None, ...]
    necessity: tuple[dict[str, float], ...]
    learned: bool = True  # False: no better than answering the commonest outcome to every claim (older: unknown)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(map(role_label, self.kinds, self.reasons, self.shared_with))

    @property
    def leans(self) -> tuple[str | None, ...]:
        """Per head, the reason it leans to, if it does."""
        roles = zip(self.kinds, self.reasons, strict=True)
        return tuple(unit_reason(reason) if kind == LEANS and reason else None for kind, reason in roles)

    @property
    def specialists(self) -> int:
        return sum(o is not None for o in self.owns)

    @property
    def reasons_owned(self) -> int:
        """Reasons with a head of their own: fewer than `specialists` when ADMIN's patient and provider checks each
        have their own head (both count as ADMIN)."""
        return len({o for o in self.owns if o is not None})


def measure_seed(seed: int, folder: Path) -> SeedResult:
    """A finished seed's run, its heads measured as `analyze` measures them."""
    heads = analyze_run(folder)["heads"][CROSS]
    run = summarize_run(folder)
    chance = (read_status(folder) or {}).get("chance")
    learned = chance is None or not at_most_chance(run.accuracy or 0.0, chance)
    return SeedResult(
        seed,
        run.step,
        run.accuracy or 0.0,
        tuple(h["kind"] for h in heads),
        tuple(h["reason"] for h in heads),
        tuple(h["shared_with"] for h in heads),
        tuple(h["owns"] for h in heads),
        tuple(h["necessity"] for h in heads),
        learned,
    )


def _similarity(a: dict[str, float], b: dict[str, float]) -> float:
    return sum(a.get(k, 0.0) * b.get(k, 0.0) for k in a)


def matched(results: Sequence[SeedResult]) -> list[list[int]] | None:
    """For each seed, which of its heads plays each of the first seed's heads: the pairing whose necessity profiles
    agree most. None when there are too many heads to try every pairing."""
    reference = results[0].necessity
    if len(reference) > MAX_MATCHED_HEADS or any(len(r.necessity) != len(reference) for r in results):
        return None  # too many pairings to try, or runs with other head counts
    orders = []
    for result in results:
        best = max(
            itertools.permutations(range(len(reference))),
            key=lambda order: sum(_similarity(reference[i], result.necessity[j]) for i, j in enumerate(order)),
        )
        orders.append(list(best))
    return orders


def bootstrap_interval(values: Sequence[float], resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float]:
    """95% percentile interval of the mean, resampling the seeds (a fixed generator: the same study, the same
    interval)."""
    rng = random.Random(0)
    means = sorted(sum(rng.choices(values, k=len(values))) / len(values) for _ in range(resamples))
    return means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]


def summarize(all_results: Sequence[SeedResult]) -> dict:
    """What the runs that learned have in common, as facts (engine.reports.study_words says them); a run that did not
    learn has no head worth naming."""
    results = [r for r in all_results if r.learned]
    n = len(results)
    if not n:
        return {
            "seeds": len(all_results),
            "learned": 0,
            "owned_in": dict.fromkeys(REASONS, 0),
            "leaned_to_in": None,
            "specialists_per_seed": [],
            "reasons_owned_per_seed": [],
            "mean_specialists": None,
            "interval_95": None,
            "matched_heads": None,
        }
    counts = [result.specialists for result in results]
    low, high = bootstrap_interval(counts)
    orders = matched(results)
    return {
        "seeds": len(all_results),
        "learned": n,
        "owned_in": {r: sum(r in result.owns for result in results) for r in REASONS},
        "leaned_to_in": {r: sum(r not in result.owns and r in result.leans for result in results) for r in REASONS},
        "specialists_per_seed": counts,
        "mean_specialists": sum(counts) / n,
        "interval_95": [low, high],
        # per head of the first seed, the head of each seed that does its work (indices)
        "matched_heads": None if orders is None else [[order[i] for order in orders] for i in range(len(orders[0]))],
        "reasons_owned_per_seed": [result.reasons_owned for result in results],
    }


def seed_result(record: dict) -> SeedResult:
    owns, necessity = record["owns"], record["necessity"]
    kinds, reasons, shared = _roles(record)
    if not all(isinstance(v, list) for v in (owns, necessity)) or not len(kinds) == len(owns) == len(necessity):
        raise ValueError("not a seed's record")
    learned = record.get("learned", True)
    if not isinstance(learned, bool):
        raise ValueError("not a seed's record")
    return SeedResult(
        whole(record["seed"]),
        whole(record["steps"]),
        number(record["accuracy"]),
        kinds,
        reasons,
        shared,
        tuple(None if o is None else text(o) for o in owns),
        tuple(numbers(n) for n in necessity),
        learned,
    )


def _roles(record: dict) -> tuple[tuple[str, ...], tuple[str | None, ...], tuple[dict[str, tuple[int, ...]], ...]]:
    """Each head's kind, the reason it names and the heads it shares with; from the labels of a study saved before
    these were recorded (engine.runs.formats)."""
    if "kinds" not in record:
        if not isinstance(record["labels"], list):
            raise ValueError("not a seed's record")
        roles = [role_from_label(text(label)) for label in record["labels"]]
        record = {
            "kinds": [r["kind"] for r in roles],
            "reasons": [r["reason"] for r in roles],
            "shared_with": [r["shared_with"] for r in roles],
        }
    kinds, reasons, shared = (record[k] for k in ("kinds", "reasons", "shared_with"))
    if not all(isinstance(v, list) for v in (kinds, reasons, shared)) or not len(kinds) == len(reasons) == len(shared):
        raise ValueError("not a seed's record")
    return (
        tuple(map(text, kinds)),
        tuple(None if r is None else text(r) for r in reasons),
        tuple(map(shared_with, shared)),
    )


def read_study(out: Path) -> tuple[dict, list[SeedResult]] | None:
    """A saved study's recipe and measured seeds (every value checked: the file may be damaged or hostile), or
    None when there is none or it cannot be read."""
    try:
        saved = read_object(out, STUDY)
        recipe = saved["recipe"]
        if not isinstance(recipe, dict) or not isinstance(saved["results"], list):
            return None
        return recipe, [seed_result(r) for r in saved["results"]]
    except (RunError, KeyError, TypeError, ValueError):
        return None
