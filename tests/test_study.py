"""Seed studies: the summary on hand-built results whose answer is known, and the CLI round trip with resume."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import pytest
from support import labelled_seed

from engine.interpret.pairs import CHECKS
from engine.reports.study import MAX_SEEDS, parse_seeds
from engine.reports.study_results import STUDY, SeedResult, bootstrap_interval, matched, seed_result, summarize
from engine.reports.study_words import summary_sentence

ROOT = Path(__file__).resolve().parents[1]


def profile(**needs: float) -> dict[str, float]:
    return dict.fromkeys(CHECKS, 0.0) | needs


def result(seed: int, owns: tuple, profiles: tuple) -> SeedResult:
    return labelled_seed(seed, tuple(f"{o} specialist" if o else "generalist" for o in owns), owns, profiles, steps=100)


def test_seeds_are_read_as_people_write_them() -> None:
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("0, 3,7-9") == [0, 3, 7, 8, 9]
    for bad in ("", "a-b", "3-1", "1,1", "-2", "²"):
        with pytest.raises(ValueError, match="seeds"):
            parse_seeds(bad)


def test_a_study_has_a_stated_limit_on_seeds_said_in_words() -> None:
    assert len(parse_seeds(f"0-{MAX_SEEDS - 1}")) == MAX_SEEDS
    for asked, said in (
        (f"0-{MAX_SEEDS}", f"at most {MAX_SEEDS} seeds"),
        ("0-100000", f"at most {MAX_SEEDS} seeds"),
        ("0-99999999999999999999", "a seed is at most 2,147,483,647"),
        (",".join(map(str, range(2 * MAX_SEEDS))), f"at most {MAX_SEEDS} seeds"),
    ):
        with pytest.raises(ValueError, match=said):
            parse_seeds(asked)


def test_summary_counts_each_reason_over_seeds_and_matches_heads_by_what_they_do() -> None:
    dosage, cost, medical = profile(DOSAGE=0.9), profile(COST=0.8), profile(MEDICAL=0.6)
    results = [
        result(0, ("DOSAGE", "COST", None), (dosage, cost, medical)),
        result(1, (None, "DOSAGE", None), (medical, dosage, profile(COST=0.3))),  # the same roles, reordered
        result(2, ("DOSAGE", None, None), (dosage, profile(), profile())),
    ]
    summary = summarize(results)
    assert summary["owned_in"] == {"MEDICAL": 0, "DOSAGE": 3, "COST": 1, "ADMIN": 0}
    assert summary["specialists_per_seed"] == [2, 1, 1]
    told = summary_sentence(summary)
    assert told.startswith("DOSAGE got its own head in 3 of 3 runs, COST in 1, MEDICAL in none")
    assert matched(results)[1] == [1, 2, 0]  # seed 1's head 2 plays seed 0's head 1 (DOSAGE), and so on
    first_heads = [results[s].labels[j] for s, j in enumerate(summary["matched_heads"][0])]
    assert first_heads == ["DOSAGE specialist", "DOSAGE specialist", "DOSAGE specialist"]
    low, high = summary["interval_95"]
    assert 1.0 <= low <= summary["mean_specialists"] <= high <= 2.0


def test_admins_patient_and_provider_specialists_count_as_admin_once_and_the_sentence_says_so() -> None:
    patient, provider = profile(sex=0.9, age=0.8), profile(specialty=0.7, place=0.7)
    split = labelled_seed(
        0,
        ("ADMIN (sex, age) specialist", "ADMIN (specialty, place) specialist", "DOSAGE specialist"),
        ("ADMIN", "ADMIN", "DOSAGE"),
        (patient, provider, profile(DOSAGE=0.9)),
    )
    summary = summarize([split, result(1, ("DOSAGE", None, None), (profile(DOSAGE=0.9), profile(), profile()))])
    assert summary["owned_in"] == {"MEDICAL": 0, "DOSAGE": 2, "COST": 0, "ADMIN": 1}
    assert summary["specialists_per_seed"] == [3, 1] and summary["reasons_owned_per_seed"] == [2, 1]
    told = summary_sentence(summary)
    assert told.startswith("DOSAGE got its own head in 2 of 2 runs, ADMIN in 1")
    assert (
        "Specialist heads per run: 2.00 on average" in told
        and "ADMIN's patient and provider checks had a head "
        "each in 1 run, so 1.50 reasons a run had a head of their own."
        in told
    )


def test_heads_that_only_lean_are_counted_where_the_reason_has_no_head_of_its_own() -> None:
    results = [
        labelled_seed(
            0, ("leans MEDICAL", "COST specialist"), (None, "COST"), (profile(MEDICAL=0.6), profile(COST=0.8))
        ),
        labelled_seed(1, ("leans MEDICAL", "leans COST"), (None, None), (profile(MEDICAL=0.7), profile(COST=0.6))),
        labelled_seed(2, ("generalist", "generalist"), (None, None), (profile(), profile())),
    ]
    summary = summarize(results)
    assert summary["leaned_to_in"] == {"MEDICAL": 2, "DOSAGE": 0, "COST": 1, "ADMIN": 0}
    assert (
        "COST got its own head in 1 of 3 runs, MEDICAL in none, DOSAGE in none, ADMIN in none. In runs where it "
        "had no head of its own, MEDICAL had a head leaning to it in 2, COST in 1."
    ) in summary_sentence(summary)


def test_a_study_saved_before_kinds_were_recorded_reads_its_heads_from_their_labels() -> None:
    record = {
        "seed": 3,
        "steps": 100,
        "accuracy": 0.9,
        "labels": ["leans COST", "shares DOSAGE with head 3"],
        "owns": [None, None],
        "necessity": [profile(COST=0.6), profile(DOSAGE=0.3)],
        "leans": ["COST", None],
    }
    read = seed_result(record)
    assert read.kinds == ("leans", "shares") and read.shared_with == ({}, {"DOSAGE": (2,)})
    assert read.labels == ("leans COST", "shares DOSAGE with head 3") and read.leans == ("COST", None)
    assert summarize([read])["leaned_to_in"]["COST"] == 1
    assert "labels" not in asdict(read) and seed_result(json.loads(json.dumps(asdict(read)))) == read
    with pytest.raises(ValueError):
        seed_result(record | {"owns": [None]})  # two heads' labels, one head's owner


def test_runs_with_other_head_counts_are_not_matched() -> None:
    results = [result(0, (None, None), (profile(), profile())), result(1, (None,), (profile(),))]
    assert matched(results) is None and summarize(results)["matched_heads"] is None


def test_no_owner_in_any_seed_is_said_plainly() -> None:
    results = [result(s, (None, None), (profile(), profile())) for s in range(3)]
    assert summary_sentence(summarize(results)).startswith("No reason got its own head in any of the 3 runs.")


def test_bootstrap_interval_is_the_mean_when_seeds_agree_and_repeats() -> None:
    assert bootstrap_interval([2, 2, 2, 2]) == (2.0, 2.0)
    assert bootstrap_interval([0, 1, 3]) == bootstrap_interval([0, 1, 3])


def study(out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "engine", "study", "--out", str(out), "--preset", "quick", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )


@pytest.mark.slow
def test_a_study_trains_every_seed_once_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "study"
    first = study(out, "--seeds", "0-1", "--steps", "40")
    assert first.returncode == 0, first.stderr
    record = json.loads((out / STUDY).read_text())
    assert [r["seed"] for r in record["results"]] == [0, 1] and record["summary"]["seeds"] == 2
    assert all(len(r["kinds"]) == len(r["reasons"]) == len(r["shared_with"]) == 4 for r in record["results"])
    assert "sentence" not in record["summary"] and summary_sentence(record["summary"]) in first.stdout
    assert json.loads(first.stdout.splitlines()[-1]) == record["summary"]
    again = study(out, "--seeds", "0-1", "--steps", "40")
    assert again.returncode == 0 and again.stdout.startswith("2 of 2 seeds already measured; training 0")
    other = study(out, "--seeds", "0-1", "--steps", "50")
    assert other.returncode == 2 and "holds a study of another recipe" in other.stderr
    assert "Traceback" not in other.stderr + first.stderr


def test_runs_that_did_not_learn_have_no_heads_named_or_counted() -> None:
    learned = result(0, ("COST", None), (profile(COST=0.8), profile()))
    lost = [
        replace(result(s, ("DOSAGE", None), (profile(DOSAGE=0.9), profile())), accuracy=a, learned=False)
        for s, a in ((1, 0.24), (2, 0.40))
    ]
    summary = summarize([learned, *lost])
    assert summary["learned"] == 1 and summary["owned_in"]["DOSAGE"] == 0  # a lost run's "specialist" is not counted
    assert summary_sentence(summary).startswith("2 of the 3 runs did not learn to audit claims")
    assert "COST got its own head in 1 of 1 run," in summary_sentence(summary)
    assert "1 in every one of the 1 runs" in summary_sentence(summary) and "interval" not in summary_sentence(summary)
    nothing = summarize(lost)
    assert nothing["learned"] == 0 and nothing["interval_95"] is None and nothing["mean_specialists"] is None
    assert summary_sentence(nothing).startswith("None of the 2 runs learned to audit claims: each did no better than")
    assert "0.00 to 0.00" not in summary_sentence(nothing)
    assert seed_result(json.loads(json.dumps(asdict(lost[0])))).learned is False  # as study.json keeps it
