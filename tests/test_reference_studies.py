"""Reference studies shipped with Headwatch: made from a finished study (never by hand), dated, with the command that
reproduces it, and read back like any run file: a damaged one is said and skipped, never a crash."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from support import make_study, seed_result

from engine.__main__ import parser
from engine.reports.reference_studies import (
    REFERENCE_DIR,
    read_references,
    reference_from_study,
    study_of_run,
    write_reference,
)
from engine.reports.study import parse_seeds
from engine.runs.reading import RunError
from engine.training.presets import PRESETS

ROOT = Path(__file__).resolve().parents[1]


def test_a_finished_study_ships_as_a_dated_summary_with_the_command_that_repeats_it(tmp_path: Path) -> None:
    train = ["--preset", "sparse", "--steps", "2000", "--weight-decay", "0.01"]
    measured = [seed_result(0, ("DOSAGE", None, None, None)), seed_result(1), seed_result(2), seed_result(5)]
    folder = make_study(tmp_path / "sparse", train, [0, 1, 2, 5], measured)
    path = write_reference(folder, into=tmp_path / "shipped")
    assert path == tmp_path / "shipped" / "sparse.json"
    shipped = read_references(tmp_path / "shipped")
    assert shipped.problems == ()
    [study] = shipped.studies
    assert (study.name, study.made, study.results) == ("sparse", "2026-01-02", tuple(measured))
    assert study.summary["owned_in"]["DOSAGE"] == 1
    # the command, run, trains the same recipe on the same seeds (as engine.__main__.study reads it)
    args = parser().parse_args(study.command.removeprefix("python -m engine ").split())
    extra = args.train_options[1:] if args.train_options[:1] == ["--"] else args.train_options
    assert ["--preset", args.preset, "--steps", str(args.steps), *extra] == train == list(study.recipe)
    assert parse_seeds(args.seeds) == [0, 1, 2, 5] and args.out == Path("studies/sparse")
    assert study.config["preset"] == "default" and "seed" not in study.config  # what seed-0 was trained with


def test_an_unfinished_or_missing_study_is_refused_in_words(tmp_path: Path) -> None:
    folder = make_study(tmp_path / "default", ["--preset", "default"], [0, 1, 2], [seed_result(0), seed_result(1)])
    with pytest.raises(RunError, match="has measured 2 of its seeds: let it finish first"):
        reference_from_study(folder)
    with pytest.raises(RunError, match="has measured 2 of its seeds"):
        reference_from_study(folder, seeds=[0, 2])
    shipped = reference_from_study(folder, seeds=[0, 1])  # the seeds it has measured, and the command for just them
    assert [r["seed"] for r in shipped["results"]] == [0, 1] and "--seeds 0-1 " in shipped["command"]
    with pytest.raises(RunError, match=r"holds no readable study\.json"):
        reference_from_study(tmp_path)
    with pytest.raises(RunError, match="a reference study's name is lower-case"):
        reference_from_study(folder, "../elsewhere")


def test_damaged_or_hostile_shipped_files_are_said_and_skipped_never_a_crash(tmp_path: Path) -> None:
    folder = make_study(tmp_path / "default", ["--preset", "default"], [0], [seed_result(0)])
    shipped = tmp_path / "shipped"
    good = json.loads(write_reference(folder, into=shipped).read_text())
    (tmp_path / "secret.json").write_text(json.dumps(good))
    damaged = {
        "broken.json": "{not json",
        "future.json": json.dumps(good | {"format": 99}),
        "undated.json": json.dumps({k: v for k, v in good.items() if k != "made"}),
        "baddate.json": json.dumps(good | {"made": "<script>"}),
        "empty.json": json.dumps(good | {"results": []}),
        "odd.json": json.dumps(good | {"results": [good["results"][0] | {"accuracy": "high"}]}),
        "list.json": "[1, 2]",
        "huge.json": " " * (5 * 2**20) + "{}",
    }
    for name, content in damaged.items():
        (shipped / name).write_text(content)
    (shipped / "link.json").symlink_to(tmp_path / "secret.json")
    read = read_references(shipped)
    assert [s.name for s in read.studies] == ["default"]  # the default recipe's, first; the rest skipped
    assert len(read.problems) == len(damaged) + 1
    for name, problem in zip(sorted([*damaged, "link.json"]), read.problems, strict=True):
        assert problem.startswith(f"The reference study {name} is not shown: ")
        assert "Error" not in problem and "Traceback" not in problem
    assert read_references(tmp_path / "nowhere").problems == ("The reference studies' folder could not be read.",)


def test_a_run_is_matched_to_the_study_of_its_own_recipe_only(tmp_path: Path) -> None:
    folder = make_study(tmp_path / "default", ["--preset", "default"], [0], [seed_result(0)])
    studies = read_references(write_reference(folder, into=tmp_path / "shipped").parent).studies
    run = PRESETS["default"].to_dict()
    same = run | {"seed": 7, "threads": 2, "model": run["model"] | {"vocab_size": 850}}
    assert study_of_run(studies, same) == studies[0]
    assert study_of_run(studies, run | {"lr": 0.01}) is None
    assert study_of_run(studies, run | {"model": run["model"] | {"sparse_attention": True}}) is None
    assert study_of_run(studies, {k: v for k, v in run.items() if k != "model"}) is None
    assert study_of_run(studies, run | {"new_lever": 3}) is None


@pytest.mark.slow
def test_the_reference_command_writes_a_study_summary_and_errors_in_one_line(tmp_path: Path) -> None:
    folder = make_study(tmp_path / "default", ["--preset", "default"], [0, 1], [seed_result(0), seed_result(1)])

    def reference(*args: str | Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "engine", "reference", *map(str, args)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )

    done = reference(folder, "--into", tmp_path / "shipped")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "shipped" / "default.json")
    assert [s.name for s in read_references(tmp_path / "shipped").studies] == ["default"]
    refused = reference(tmp_path, "--into", tmp_path / "shipped")
    assert refused.returncode == 2 and refused.stderr.startswith("error: ") and "Traceback" not in refused.stderr


def test_the_shipped_studies_read_cleanly_and_ship_with_the_package() -> None:
    shipped = read_references()
    assert shipped.problems == ()
    assert shipped.studies and shipped.studies[0].name == "default"
    for study in shipped.studies:
        assert study.command.startswith(f"python -m engine study --out studies/{study.name} --seeds ")
        assert len(study.results) >= 5
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert all(path.parent == REFERENCE_DIR for path in REFERENCE_DIR.glob("*.json"))
    assert f"{REFERENCE_DIR.name}/*.json" in package_data["engine.reports"]
