"""Seeds as a first-class axis: one recipe trained with several seeds, each run's heads measured as `analyze`
measures them, and what the seeds have in common. One run is an anecdote; a study says "DOSAGE got its own head in
5 of 5 runs, ADMIN in 1".

`python -m engine study --out studies/default --seeds 0-4` trains each seed in its own process (one thread each, so
every seed repeats exactly), into <out>/seed-<N>, a normal run folder; <out>/study.json is rewritten after every
seed, so a study that is stopped resumes where it was, and a finished seed is never trained twice. What a seed's
measurement holds, and the summary over seeds: engine.reports.study_results.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from engine.reports.study_results import STUDY, SeedResult, measure_seed, read_study, summarize
from engine.runs.layout import STATUS
from engine.runs.reading import RunError, open_in_run, read_object
from engine.runs.writer import WriterLock, atomic_write_json, create_new_file
from engine.training.config import LIMITS

ROOT = Path(__file__).resolve().parents[2]  # the project folder, where `python -m engine` is found
STUDY_LOCK = ".study.lock"  # held by the one process running the study
PARENT_ENV = "HEADWATCH_STUDY_PID"  # tells a seed's worker which study started it: it stops when that one ends
MAX_SEEDS = 100
LOG_TAIL_BYTES = 64 * 2**10  # what is read of a seed's log: its last progress line and why it failed


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
        heads = "; ".join(done.labels) if done.learned else "not named (it did not learn to audit claims)"
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
