"""Seeds as a first-class axis: one recipe trained with several seeds, each run's heads measured as `analyze`
measures them, and what the seeds have in common. One run is an anecdote; a study says "DOSAGE got its own head in
5 of 5 runs, ADMIN in 1".

`python -m engine study --out studies/default --seeds 0-4` trains each seed in its own process (one thread each, so
every seed repeats exactly), into <out>/seed-<N>, a normal run folder; <out>/study.json is rewritten after every
seed, so a study that is stopped resumes where it was, and a finished seed is never trained twice.
"""

from __future__ import annotations

import itertools
import os
import random
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from data.rules import REASONS
from engine.interpret.labels import role_label
from engine.interpret.ownership import LEANS, unit_reason
from engine.reports.analyze import analyze_run
from engine.runs.formats import role_from_label
from engine.runs.layout import STATUS
from engine.runs.listing import summarize as summarize_run
from engine.runs.reading import RunError, number, numbers, open_in_run, read_object, read_status, text, whole
from engine.runs.writer import WriterLock, atomic_write_json, create_new_file
from engine.task.claims_model import CROSS
from engine.telemetry import at_most_chance
from engine.training.config import LIMITS

ROOT = Path(__file__).resolve().parents[1]  # where `python -m engine` is found
STUDY = "study.json"
STUDY_LOCK = ".study.lock"  # held by the one process running the study
PARENT_ENV = "HEADWATCH_STUDY_PID"  # tells a seed's worker which study started it: it stops when that one ends
MAX_SEEDS = 100
LOG_TAIL_BYTES = 64 * 2**10  # what is read of a seed's log: its last progress line and why it failed
BOOTSTRAP_RESAMPLES = 2000
MAX_MATCHED_HEADS = 6  # heads matched across seeds by trying every pairing: 6! = 720 per seed
MAX_HEADS = 64  # the most heads a saved seed's head may share its work with


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


def parse_seeds(text: str) -> list[int]:
    """'0-4' -> [0, 1, 2, 3, 4]; '0,3,7-9' -> [0, 3, 7, 8, 9]; at most MAX_SEEDS of them."""
    seeds: list[int] = []
    highest = int(LIMITS["seed"][1])
    for part in text.split(",")[: MAX_SEEDS + 1]:
        found = re.fullmatch(r"(\d{1,30})(?:-(\d{1,30}))?", part.strip(), re.ASCII)
        if found is None:
            raise ValueError(f"seeds must look like 0-4 or 0,2,5 (got {text[:40]!r})")
        first, last = int(found[1]), int(found[2] or found[1])
        if last > highest:
            raise ValueError(f"a seed is at most {highest:,} (got {last:,})")
        if last < first:
            raise ValueError(f"a range of seeds goes up, as in {last}-{first} (got {first}-{last})")
        if last - first + 1 + len(seeds) > MAX_SEEDS:
            raise ValueError(f"a study trains at most {MAX_SEEDS} seeds (asked for more)")
        seeds += range(first, last + 1)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct whole numbers from 0 (got {text[:40]!r})")
    return seeds


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


def _finished(folder: Path) -> bool:
    try:
        return read_object(folder, STATUS).get("status") == "finished"
    except RunError:
        return False


def _record(out: Path, recipe: dict, results: dict[int, SeedResult], failures: dict[int, str]) -> dict:
    """Write study.json (under the study's lock): this study's seeds merged with those an earlier study of the same
    recipe recorded there, never written over them blind."""
    merged = {**_recorded(out, recipe), **results}
    ordered = [merged[s] for s in sorted(merged)]
    study = {
        "recipe": recipe,
        "results": [asdict(r) for r in ordered],
        "failures": {s: why for s, why in failures.items() if s not in merged},
        "summary": summarize(ordered) if ordered else None,
    }
    atomic_write_json(out / STUDY, study)
    return study


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
        tuple({text(unit): _head_indices(heads) for unit, heads in _table(s).items()} for s in shared),
    )


def _head_indices(value: object) -> tuple[int, ...]:
    if not isinstance(value, list | tuple) or not all(0 <= whole(v) < MAX_HEADS for v in value):
        raise ValueError("not a list of heads")
    return tuple(value)


def _table(value: object) -> dict:
    if not isinstance(value, dict):
        raise ValueError("not a table")
    return value


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


def _recorded(out: Path, recipe: dict) -> dict[int, SeedResult]:
    """Seeds already measured by an earlier, interrupted study of the same recipe in `out` (a damaged record is
    measured again); a study of another recipe there is refused, never mixed in."""
    saved = read_study(out)
    if saved is None:
        return {}
    if saved[0].get("train") != recipe["train"]:
        raise RunError(f"{out.name} holds a study of another recipe; choose another --out")
    return {r.seed: r for r in saved[1]}


def _log_tail(log: Path) -> str:
    """The end of a seed's log (never followed out of the study's folder, never read whole)."""
    try:
        with open_in_run(log.parent, log.name) as file:
            file.seek(max(0, os.fstat(file.fileno()).st_size - LOG_TAIL_BYTES))
            return file.read(LOG_TAIL_BYTES).decode("utf-8", errors="replace")
    except (RunError, OSError):
        return ""


def _progress(log: Path) -> str:
    lines = _log_tail(log).splitlines()
    return next((line.split("  ")[0] for line in reversed(lines) if line.startswith("step ")), "starting")


def _launch(out: Path, seed: int, train_args: Sequence[str]) -> tuple[subprocess.Popen, Path]:
    log = out / f"seed-{seed}.log"
    command = [
        sys.executable,
        "-m",
        "engine",
        "train",
        "--out",
        str(out / f"seed-{seed}"),
        "--replace",
        "--seed",
        str(seed),
        *train_args,
    ]
    with create_new_file(log) as handle:
        return subprocess.Popen(
            command, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, PARENT_ENV: str(os.getpid())}
        ), log


def _collect(
    out: Path, seed: int, process: subprocess.Popen, log: Path, results: dict[int, SeedResult], failures: dict[int, str]
) -> str:
    """Measure a seed whose training ended, or note why it failed; the line that says so."""
    folder = out / f"seed-{seed}"
    if process.returncode == 0 and _finished(folder):
        results[seed] = done = measure_seed(seed, folder)
        heads = ", ".join(done.labels) if done.learned else "not named (it did not learn to audit claims)"
        return f"seed {seed}: {done.accuracy:.1%} held-out, heads: {heads}"
    failures[seed] = _progress(log) if process.returncode == 0 else _log_tail(log)[-300:].strip()
    return f"seed {seed} did not finish: {failures[seed]}"


def _survivors(out: Path, seeds: Sequence[int]) -> dict[int, str]:
    """Seeds whose folder a process still writes (a worker that outlived an earlier study): left alone, and said."""
    found = {s: WriterLock.holder(out / f"seed-{s}") for s in seeds}
    return {
        s: f"still being trained by {holder}, which outlived the study that started it; it is left alone: stop "
        f"it or let it end, then resume the study"
        for s, holder in found.items()
        if holder
    }


def run_study(
    out: Path,
    seeds: Sequence[int],
    train_args: Sequence[str],
    parallel: int = 2,
    echo: Callable[[str], None] = print,
    stop: threading.Event | None = None,
) -> dict:
    """Train and measure every seed not yet measured in `out`, `parallel` at a time, until done or `stop` is set
    (training seeds are then ended, to be trained again on resume); the study record. One process at a time runs a
    study (RunError for a second); its seeds' workers end when it ends, however it ends."""
    try:
        lock = WriterLock(out, STUDY_LOCK, what="study")
    except OSError as error:
        raise _in_words(error) from None
    try:
        return _run_locked(out, seeds, train_args, parallel, echo, stop)
    except OSError as error:
        raise _in_words(error) from None
    finally:
        lock.release()


def _in_words(error: OSError) -> RunError:
    """A file error said without the server's paths (a page shows it)."""
    return RunError(f"the study's files could not be written or read ({error.strerror or 'unknown error'})")


def _run_locked(
    out: Path,
    seeds: Sequence[int],
    train_args: Sequence[str],
    parallel: int,
    echo: Callable[[str], None],
    stop: threading.Event | None,
) -> dict:
    recipe = {"train": list(train_args), "seeds": list(seeds)}
    results = {s: r for s, r in _recorded(out, recipe).items() if s in seeds and _finished(out / f"seed-{s}")}
    failures = _survivors(out, [s for s in seeds if s not in results])
    for seed, why in failures.items():
        echo(f"seed {seed} is {why}")
    waiting = [s for s in seeds if s not in results and s not in failures]
    running: dict[int, tuple[subprocess.Popen, Path]] = {}
    started, last_report = time.monotonic(), time.monotonic()
    echo(f"{len(results)} of {len(seeds)} seeds already measured; training {len(waiting)}, {parallel} at a time")
    try:
        while (waiting or running) and not (stop and stop.is_set()):
            while waiting and len(running) < parallel:
                seed = waiting.pop(0)
                running[seed] = _launch(out, seed, train_args)
            time.sleep(0.5)
            for seed, (process, log) in list(running.items()):
                if process.poll() is not None:
                    del running[seed]
                    line = _collect(out, seed, process, log, results, failures)
                    echo(f"{line} ({len(results)} of {len(seeds)} done, {time.monotonic() - started:.0f} s)")
                    _record(out, recipe, results, failures)
            if running and time.monotonic() - last_report >= 30:
                last_report = time.monotonic()
                echo("; ".join(f"seed {s}: {_progress(log)}" for s, (_, log) in running.items()))
    finally:
        for process, _ in running.values():
            process.terminate()  # the worker stops as Stop does: its folder says it was stopped
            process.wait()
    return _record(out, recipe, results, failures)


class BackgroundStudy:
    """A study trained in a background thread, for the dashboard: its progress lines, and a way to stop it."""

    def __init__(self, out: Path, seeds: Sequence[int], train_args: Sequence[str], parallel: int = 2) -> None:
        self.out, self.seeds = out, list(seeds)
        self.lines: list[str] = []  # appended by the study's thread only
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(list(train_args), parallel), daemon=True, name="headwatch-study"
        )
        self._thread.start()

    def _run(self, train_args: list[str], parallel: int) -> None:
        try:
            run_study(self.out, self.seeds, train_args, parallel, self.lines.append, self._stop)
        except (RunError, OSError) as error:
            self.error = str(error)

    @property
    def active(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
