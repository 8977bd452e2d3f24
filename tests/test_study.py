"""Seed studies: the summary on hand-built results whose answer is known, and the CLI round trip with resume."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from engine.interpret.pairs import CHECKS
from engine.reports.study import (
    MAX_SEEDS,
    STUDY,
    SeedResult,
    bootstrap_interval,
    matched,
    parse_seeds,
    seed_result,
    summarize,
)

ROOT = Path(__file__).resolve().parents[1]


def profile(**needs: float) -> dict[str, float]:
    return dict.fromkeys(CHECKS, 0.0) | needs


def result(seed: int, owns: tuple, profiles: tuple) -> SeedResult:
    labels = tuple(f"{o} specialist" if o else "generalist" for o in owns)
    return SeedResult(seed, 100, 0.9, labels, owns, profiles)


def test_seeds_are_read_as_people_write_them() -> None:
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("0, 3,7-9") == [0, 3, 7, 8, 9]
    for bad in ("", "a-b", "3-1", "1,1", "-2", "²"):
        with pytest.raises(ValueError, match="seeds"):
            parse_seeds(bad)


def test_a_study_has_a_stated_limit_on_seeds_said_in_words() -> None:
    assert len(parse_seeds(f"0-{MAX_SEEDS - 1}")) == MAX_SEEDS
    for asked, said in ((f"0-{MAX_SEEDS}", f"at most {MAX_SEEDS} seeds"), ("0-100000", f"at most {MAX_SEEDS} seeds"),
                        ("0-99999999999999999999", "a seed is at most 2,147,483,647"),
                        (",".join(map(str, range(2 * MAX_SEEDS))), f"at most {MAX_SEEDS} seeds")):
        with pytest.raises(ValueError, match=said):
            parse_seeds(asked)


def test_summary_counts_each_reason_over_seeds_and_matches_heads_by_what_they_do() -> None:
    dosage, cost, medical = profile(DOSAGE=0.9), profile(COST=0.8), profile(MEDICAL=0.6)
    results = [result(0, ("DOSAGE", "COST", None), (dosage, cost, medical)),
               result(1, (None, "DOSAGE", None), (medical, dosage, profile(COST=0.3))),  # the same roles, reordered
               result(2, ("DOSAGE", None, None), (dosage, profile(), profile()))]
    summary = summarize(results)
    assert summary["owned_in"] == {"MEDICAL": 0, "DOSAGE": 3, "COST": 1, "ADMIN": 0}
    assert summary["specialists_per_seed"] == [2, 1, 1]
    assert summary["sentence"].startswith("DOSAGE got its own head in 3 of 3 runs, COST in 1, MEDICAL in none")
    assert matched(results)[1] == [1, 2, 0]  # seed 1's head 2 plays seed 0's head 1 (DOSAGE), and so on
    assert summary["matched_heads"][0] == ["DOSAGE specialist", "DOSAGE specialist", "DOSAGE specialist"]
    low, high = summary["interval_95"]
    assert 1.0 <= low <= summary["mean_specialists"] <= high <= 2.0


def test_admins_patient_and_provider_specialists_count_as_admin_once_and_the_sentence_says_so() -> None:
    patient, provider = profile(sex=0.9, age=0.8), profile(specialty=0.7, place=0.7)
    split = SeedResult(0, 100, 0.9, ("ADMIN (sex, age) specialist", "ADMIN (specialty, place) specialist",
                                     "DOSAGE specialist"), ("ADMIN", "ADMIN", "DOSAGE"),
                       (patient, provider, profile(DOSAGE=0.9)))
    summary = summarize([split, result(1, ("DOSAGE", None, None), (profile(DOSAGE=0.9), profile(), profile()))])
    assert summary["owned_in"] == {"MEDICAL": 0, "DOSAGE": 2, "COST": 0, "ADMIN": 1}
    assert summary["specialists_per_seed"] == [3, 1] and summary["reasons_owned_per_seed"] == [2, 1]
    assert summary["sentence"].startswith("DOSAGE got its own head in 2 of 2 runs, ADMIN in 1")
    assert ("Specialist heads per run: 2.00 on average" in summary["sentence"] and "ADMIN's patient and provider "
            "checks had a head each in 1 run, so 1.50 reasons a run had a head of their own." in summary["sentence"])


def test_heads_that_only_lean_are_counted_where_the_reason_has_no_head_of_its_own() -> None:
    results = [SeedResult(0, 100, 0.9, ("leans MEDICAL", "COST specialist"), (None, "COST"),
                          (profile(MEDICAL=0.6), profile(COST=0.8)), ("MEDICAL", None)),
               SeedResult(1, 100, 0.9, ("leans MEDICAL", "leans COST"), (None, None),
                          (profile(MEDICAL=0.7), profile(COST=0.6)), ("MEDICAL", "COST")),
               SeedResult(2, 100, 0.9, ("generalist", "generalist"), (None, None), (profile(), profile()),
                          (None, None))]
    summary = summarize(results)
    assert summary["leaned_to_in"] == {"MEDICAL": 2, "DOSAGE": 0, "COST": 1, "ADMIN": 0}
    assert ("COST got its own head in 1 of 3 runs, MEDICAL in none, DOSAGE in none, ADMIN in none. In runs where it "
            "had no head of its own, MEDICAL had a head leaning to it in 2, COST in 1.") in summary["sentence"]


def test_a_study_saved_before_leaning_heads_were_recorded_still_reads() -> None:
    record = {"seed": 3, "steps": 100, "accuracy": 0.9, "labels": ["leans COST"], "owns": [None],
              "necessity": [profile(COST=0.6)]}
    assert seed_result(record).leans == ()
    summary = summarize([seed_result(record)])
    assert summary["leaned_to_in"] is None and "leaning" not in summary["sentence"]  # unknown, not "none leaned"
    with pytest.raises(ValueError):
        seed_result(record | {"leans": ["COST", "MEDICAL"]})  # two heads' leanings for one head


def test_runs_with_other_head_counts_are_not_matched() -> None:
    results = [result(0, (None, None), (profile(), profile())), result(1, (None,), (profile(),))]
    assert matched(results) is None and summarize(results)["matched_heads"] is None


def test_no_owner_in_any_seed_is_said_plainly() -> None:
    results = [result(s, (None, None), (profile(), profile())) for s in range(3)]
    assert summarize(results)["sentence"].startswith("No reason got its own head in any of the 3 runs.")


def test_bootstrap_interval_is_the_mean_when_seeds_agree_and_repeats() -> None:
    assert bootstrap_interval([2, 2, 2, 2]) == (2.0, 2.0)
    assert bootstrap_interval([0, 1, 3]) == bootstrap_interval([0, 1, 3])


def study(out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", "study", "--out", str(out), "--preset", "quick",
                           *args], capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_a_study_trains_every_seed_once_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "study"
    first = study(out, "--seeds", "0-1", "--steps", "40")
    assert first.returncode == 0, first.stderr
    record = json.loads((out / STUDY).read_text())
    assert [r["seed"] for r in record["results"]] == [0, 1] and record["summary"]["seeds"] == 2
    assert all(len(r["labels"]) == len(r["leans"]) == 4 for r in record["results"])
    assert json.loads(first.stdout.splitlines()[-1]) == record["summary"]
    again = study(out, "--seeds", "0-1", "--steps", "40")
    assert again.returncode == 0 and again.stdout.startswith("2 of 2 seeds already measured; training 0")
    other = study(out, "--seeds", "0-1", "--steps", "50")
    assert other.returncode == 2 and "holds a study of another recipe" in other.stderr
    assert "Traceback" not in other.stderr + first.stderr


def test_runs_that_did_not_learn_have_no_heads_named_or_counted() -> None:
    learned = result(0, ("COST", None), (profile(COST=0.8), profile()))
    lost = [replace(result(s, ("DOSAGE", None), (profile(DOSAGE=0.9), profile())), accuracy=a, learned=False)
            for s, a in ((1, 0.24), (2, 0.40))]
    summary = summarize([learned, *lost])
    assert summary["learned"] == 1 and summary["owned_in"]["DOSAGE"] == 0  # a lost run's "specialist" is not counted
    assert summary["sentence"].startswith("2 of the 3 runs did not learn to audit claims")
    assert "COST got its own head in 1 of 1 run," in summary["sentence"]
    assert "1 in every one of the 1 runs" in summary["sentence"] and "interval" not in summary["sentence"]
    nothing = summarize(lost)
    assert nothing["learned"] == 0 and nothing["interval_95"] is None and nothing["mean_specialists"] is None
    assert nothing["sentence"].startswith("None of the 2 runs learned to audit claims: each did no better than")
    assert "0.00 to 0.00" not in nothing["sentence"]
    assert seed_result(json.loads(json.dumps(asdict(lost[0])))).learned is False  # as study.json keeps it
