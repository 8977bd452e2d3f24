"""Seeds as a first-class axis: one recipe trained with several seeds, each run's heads measured as `analyze`
measures them, and what the seeds have in common. One run is an anecdote; a study says "DOSAGE got its own head in
5 of 5 runs, ADMIN in 1".

`python -m engine study --out studies/default --seeds 0-4` trains each seed in its own process (one thread each, so
every seed repeats exactly), into <out>/seed-<N>, a normal run folder; <out>/study.json is rewritten after every
seed, so a study that is stopped resumes where it was, and a finished seed is never trained twice.
"""

from __future__ import annotations

import itertools
import json
import random
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.analyze import analyze_run
from engine.model import REASONS
from engine.run_files import STATUS, RunError, read_object
from engine.runs import atomic_write_json
from engine.runs import summarize as summarize_run

ROOT = Path(__file__).resolve().parents[1]  # where `python -m engine` is found
STUDY = "study.json"
CROSS = "decoder.0.cross"
BOOTSTRAP_RESAMPLES = 2000
MAX_MATCHED_HEADS = 6  # heads matched across seeds by trying every pairing: 6! = 720 per seed


@dataclass(frozen=True)
class SeedResult:
    seed: int
    steps: int
    accuracy: float
    labels: tuple[str, ...]  # per cross-attention head
    owns: tuple[str | None, ...]
    necessity: tuple[dict[str, float], ...]

    @property
    def specialists(self) -> int:
        return sum(o is not None for o in self.owns)


def parse_seeds(text: str) -> list[int]:
    """'0-4' -> [0, 1, 2, 3, 4]; '0,3,7-9' -> [0, 3, 7, 8, 9]."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            low, _, high = part.strip().partition("-")
            seeds += range(int(low), int(high or low) + 1)
    except ValueError:
        raise ValueError(f"seeds must look like 0-4 or 0,2,5 (got {text!r})") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(f"seeds must be distinct whole numbers from 0 (got {text!r})")
    return seeds


def measure_seed(seed: int, folder: Path) -> SeedResult:
    """A finished seed's run, its heads measured as `analyze` measures them."""
    heads = analyze_run(folder)["heads"][CROSS]
    run = summarize_run(folder)
    return SeedResult(seed, run.step, run.accuracy or 0.0, tuple(h["label"] for h in heads),
                      tuple(h["owns"] for h in heads), tuple(h["necessity"] for h in heads))


def _similarity(a: dict[str, float], b: dict[str, float]) -> float:
    return sum(a.get(k, 0.0) * b.get(k, 0.0) for k in a)


def matched(results: Sequence[SeedResult]) -> list[list[int]] | None:
    """For each seed, which of its heads plays each of the first seed's heads: the pairing whose necessity profiles
    agree most. None when there are too many heads to try every pairing."""
    reference = results[0].necessity
    if len(reference) > MAX_MATCHED_HEADS:
        return None
    orders = []
    for result in results:
        best = max(itertools.permutations(range(len(reference))),
                   key=lambda order: sum(_similarity(reference[i], result.necessity[j]) for i, j in enumerate(order)))
        orders.append(list(best))
    return orders


def bootstrap_interval(values: Sequence[float], resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float]:
    """95% percentile interval of the mean, resampling the seeds (a fixed generator: the same study, the same
    interval)."""
    rng = random.Random(0)
    means = sorted(sum(rng.choices(values, k=len(values))) / len(values) for _ in range(resamples))
    return means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]


def summarize(results: Sequence[SeedResult]) -> dict:
    n = len(results)
    owned = {r: sum(r in result.owns for result in results) for r in REASONS}
    counts = [result.specialists for result in results]
    low, high = bootstrap_interval(counts)
    orders = matched(results)
    roles = None if orders is None else [[results[s].labels[order[i]] for s, order in enumerate(orders)]
                                         for i in range(len(results[0].labels))]
    first, *rest = sorted(REASONS, key=lambda r: -owned[r])
    told = ", ".join([f"{first} got its own head in {owned[first]} of {n} run{'s' if n > 1 else ''}",
                      *[f"{r} in {owned[r] or 'none'}" for r in rest]])
    return {
        "seeds": n,
        "owned_in": owned,
        "specialists_per_seed": counts,
        "mean_specialists": sum(counts) / n,
        "interval_95": [low, high],
        "matched_heads": roles,
        "sentence": f"{told}. Specialist heads per run: {sum(counts) / n:.1f} on average (95% interval {low:.1f} to "
                    f"{high:.1f}, over {n} seeds).",
    }


def _finished(folder: Path) -> bool:
    try:
        return read_object(folder, STATUS).get("status") == "finished"
    except RunError:
        return False


def _record(out: Path, recipe: dict, results: dict[int, SeedResult], failures: dict[int, str]) -> dict:
    ordered = [results[s] for s in sorted(results)]
    study = {"recipe": recipe, "results": [asdict(r) for r in ordered], "failures": failures,
             "summary": summarize(ordered) if ordered else None}
    atomic_write_json(out / STUDY, study)
    return study


def _recorded(out: Path, recipe: dict) -> dict[int, SeedResult]:
    """Seeds already measured by an earlier, interrupted study of the same recipe in `out` (a damaged record is
    measured again); a study of another recipe there is refused, never mixed in."""
    try:
        saved = json.loads((out / STUDY).read_text())
    except (OSError, ValueError):
        return {}
    if isinstance(saved, dict) and isinstance(saved.get("recipe"), dict) and saved["recipe"].get("train") != recipe[
            "train"]:
        raise RunError(f"{out} holds a study of another recipe ({' '.join(map(str, saved['recipe']['train']))}); "
                       "choose another --out")
    try:
        return {r["seed"]: SeedResult(**{**r, "labels": tuple(r["labels"]), "owns": tuple(r["owns"]),
                                         "necessity": tuple(r["necessity"])}) for r in saved["results"]}
    except (ValueError, KeyError, TypeError):
        return {}


def _progress(log: Path) -> str:
    try:
        lines = log.read_text().splitlines()
    except OSError:
        return "starting"
    return next((line.split("  ")[0] for line in reversed(lines) if line.startswith("step ")), "starting")


def run_study(out: Path, seeds: Sequence[int], train_args: Sequence[str], parallel: int = 2,
              echo: Callable[[str], None] = print) -> dict:
    """Train and measure every seed not yet measured in `out`, `parallel` at a time; the study record."""
    out.mkdir(parents=True, exist_ok=True)
    recipe = {"train": list(train_args), "seeds": list(seeds)}
    results = {s: r for s, r in _recorded(out, recipe).items() if s in seeds and _finished(out / f"seed-{s}")}
    failures: dict[int, str] = {}
    waiting = [s for s in seeds if s not in results]
    running: dict[int, tuple[subprocess.Popen, Path]] = {}
    started, last_report = time.monotonic(), 0.0
    echo(f"{len(results)} of {len(seeds)} seeds already measured; training {len(waiting)}, {parallel} at a time")
    while waiting or running:
        while waiting and len(running) < parallel:
            seed = waiting.pop(0)
            folder, log = out / f"seed-{seed}", out / f"seed-{seed}.log"
            command = [sys.executable, "-m", "engine", "train", "--out", str(folder), "--replace", "--seed",
                       str(seed), *train_args]
            with open(log, "w") as handle:
                running[seed] = (subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT), log)
        time.sleep(1.0)
        for seed, (process, log) in list(running.items()):
            if process.poll() is None:
                continue
            del running[seed]
            folder = out / f"seed-{seed}"
            if process.returncode == 0 and _finished(folder):
                results[seed] = done = measure_seed(seed, folder)
                echo(f"seed {seed}: {done.accuracy:.1%} held-out, heads: {', '.join(done.labels)} "
                     f"({len(results)} of {len(seeds)} done, {time.monotonic() - started:.0f} s)")
            else:
                failures[seed] = _progress(log) if process.returncode == 0 else log.read_text()[-300:].strip()
                echo(f"seed {seed} did not finish: {failures[seed]}")
            _record(out, recipe, results, failures)
        if running and time.monotonic() - last_report >= 30:
            last_report = time.monotonic()
            echo("  " + "; ".join(f"seed {s}: {_progress(log)}" for s, (_, log) in running.items()))
    return _record(out, recipe, results, failures)
