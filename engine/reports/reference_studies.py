"""Reference studies shipped with Headwatch: the project's own `python -m engine study` output, one small file per
recipe (each seed's measured heads, not its run), so that a page can say what makes heads specialize even on a run
where none formed.

`python -m engine reference <study folder>` makes one from a finished study's study.json (never by hand), dated, with
the command that reproduces it. A shipped file is read like any run file: every value checked, a damaged one said
and skipped, never a crash.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.reports.study_results import STUDY, SeedResult, read_study, seed_result, summarize
from engine.runs.reading import RunError, read_config, read_object, text
from engine.runs.writer import atomic_write_json
from engine.telemetry import frozen

REFERENCE_DIR = Path(__file__).resolve().parent / "reference_studies"
FORMAT = 2  # a file of another format is said and skipped: its fields may mean something else
READS = (1, FORMAT)  # format 1 named each head by its label (read as engine.reports.study_results.seed_result reads it)
FIRST = "default"  # the live demo's recipe comes first on every page
DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,40}", re.ASCII)


@dataclass(frozen=True)
class ReferenceStudy:
    name: str  # the file's name: the recipe it studies ("default", "sparse", ...)
    made: str  # YYYY-MM-DD: when the study's last seed was measured
    command: str  # what reproduces it
    recipe: tuple[str, ...]  # the `train` options every seed was trained with
    config: Mapping[str, Any]  # the settings its first seed was trained with, as its config.json says
    results: tuple[SeedResult, ...]

    @property
    def summary(self) -> dict:
        return summarize(self.results)


def seeds_text(seeds: list[int]) -> str:
    """[0, 1, 2, 3, 5] -> '0-3,5': the --seeds option that names them."""
    spans: list[list[int]] = []
    for seed in sorted(seeds):
        if spans and seed == spans[-1][1] + 1:
            spans[-1][1] = seed
        else:
            spans.append([seed, seed])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def study_command(name: str, train: list[str], seeds: list[int]) -> str:
    """The `python -m engine study` line that trains this recipe again (engine.__main__ puts --preset and --steps
    first in the options it records, the rest after '--')."""
    options, rest = [], list(train)
    for flag in ("--preset", "--steps"):
        if rest[:1] == [flag] and len(rest) > 1:
            options += rest[:2]
            rest = rest[2:]
    tail = ["--", *rest] if rest else []
    return " ".join(
        ["python -m engine study", "--out", f"studies/{name}", "--seeds", seeds_text(seeds), *options, *tail]
    )


def reference_from_study(folder: Path, name: str | None = None, seeds: list[int] | None = None) -> dict:
    """A study's shipped summary: its recipe, each seed's measured heads, the date, the command. All the seeds its
    study was asked for, or only `seeds` (each seed trains on its own and repeats exactly, so the command that names
    just these trains them again); every one of them must have been measured."""
    saved = read_study(folder)
    if saved is None:
        raise RunError(f"{folder.name} holds no readable {STUDY}: run `python -m engine study` there first")
    recipe, results = saved
    name = name or folder.name
    if not NAME.fullmatch(name):
        raise RunError(f"a reference study's name is lower-case letters, digits, '-' or '_' (got {name[:40]!r})")
    wanted = seeds or recipe.get("seeds")
    measured = {r.seed: r for r in results}
    if not isinstance(wanted, list) or not wanted or any(s not in measured for s in wanted):
        raise RunError(
            f"the study in {folder.name} has measured {len(results)} of its seeds: let it finish first, "
            "or ship only seeds it has measured"
        )
    made = datetime.fromtimestamp((folder / STUDY).stat().st_mtime, UTC).date().isoformat()
    train = [str(option) for option in recipe.get("train", [])]
    return {
        "format": FORMAT,
        "made": made,
        "command": study_command(name, train, wanted),
        "recipe": train,
        "config": {k: v for k, v in read_config(folder / f"seed-{min(wanted)}").items() if k != "seed"},
        "results": [asdict(measured[s]) for s in sorted(wanted)],
    }


def write_reference(
    folder: Path, name: str | None = None, into: Path | None = None, seeds: list[int] | None = None
) -> Path:
    """reference_from_study, written as <name>.json into `into` (default: the studies shipped with Headwatch); its
    path."""
    record = reference_from_study(folder, name, seeds)
    into = into or REFERENCE_DIR
    path = into / f"{name or folder.name}.json"
    into.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, record)
    return path


def _reference(folder: Path, file: str) -> ReferenceStudy:
    saved = read_object(folder, file)
    if saved.get("format") not in READS:
        raise ValueError("it was written in another format")
    made, command = text(saved["made"]), text(saved["command"])
    config, recipe = saved["config"], saved["recipe"]
    if not (
        DATE.fullmatch(made)
        and isinstance(recipe, list)
        and isinstance(config, dict)
        and isinstance(saved["results"], list)
    ):
        raise ValueError("it is damaged")
    results = tuple(seed_result(r) for r in saved["results"])
    if not results:
        raise ValueError("it holds no seeds")
    return ReferenceStudy(file.removesuffix(".json"), made, command, tuple(map(text, recipe)), frozen(config), results)


@dataclass(frozen=True)
class References:
    """The shipped studies that could be read, the default recipe's first, and a sentence for each that could not."""

    studies: tuple[ReferenceStudy, ...] = ()
    problems: tuple[str, ...] = ()


def read_references(folder: Path | None = None) -> References:
    """Every study in `folder` (default: those shipped with Headwatch), each checked as a run file is."""
    folder = folder or REFERENCE_DIR
    try:
        files = sorted(p.name for p in folder.iterdir() if p.suffix == ".json" and NAME.fullmatch(p.stem))
    except OSError:
        return References(problems=("The reference studies' folder could not be read.",))
    studies, problems = [], []
    for file in sorted(files, key=lambda f: (f != f"{FIRST}.json", f)):
        try:
            studies.append(_reference(folder, file))
        except KeyError:
            problems.append(f"The reference study {file} is not shown: it lacks a field it needs.")
        except (RunError, TypeError, ValueError) as error:
            problems.append(f"The reference study {file} is not shown: {error}.")
    return References(tuple(studies), tuple(problems))


# Settings that do not change what a run learns (how it is run and watched), that a study varies itself, or that
# the claims set (the vocabulary's size, from the claims' words)
NOT_THE_RECIPE = frozenset({"seed", "threads", "device", "tensorboard", "eval_every", "optim_every", "vocab_size"})


def study_of_run(studies: Sequence[ReferenceStudy], config: Mapping[str, Any]) -> ReferenceStudy | None:
    """The shipped study of the recipe a run was trained with: every setting the same as its seeds', but for the
    seed and how it was run; None when no study trained that recipe (a preset changed since, say)."""
    return next((study for study in studies if _same(config, study.config) and _same(study.config, config)), None)


def _same(settings: Any, wanted: Mapping[str, Any]) -> bool:
    """Whether every setting in `wanted` (nested ones too) has the same value in `settings`."""
    return isinstance(settings, Mapping) and all(
        _same(settings.get(key), value) if isinstance(value, Mapping) else settings.get(key) == value
        for key, value in wanted.items()
        if key not in NOT_THE_RECIPE
    )
