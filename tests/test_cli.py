"""CLI round trip as a user runs it: train, predict, analyze; bad input gives one plain line."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import inference
from engine.dataset import HELDOUT_SEED_OFFSET

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *args], input=stdin, capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "run1"
    started = time.perf_counter()
    result = run_cli("train", "--out", str(out), "--preset", "quick", "--steps", "120", "--seed", "3")
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    final = json.loads(result.stdout.strip().splitlines()[-1])
    assert final["steps"] == 120 and 0 <= final["accuracy"] <= 1 and final["seconds"] > 0
    # wall seconds count from the start: setup (claims, model, optimizer, first measurement) before training
    assert 0 < final["prepare_seconds"] < final["setup_seconds"] < elapsed - final["seconds"]
    return out


def test_predict_reads_stdin_and_writes_one_json_per_line(trained_run: Path) -> None:
    claims = "Diabetes patient, Metformin 500mg, $150\n\n" + "x" * 6000 + "\nhello there\n"
    result = run_cli("predict", "--run", str(trained_run), stdin=claims)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 4
    assert lines[0]["verdict"] in ("VALID", "INVALID")
    assert lines[0]["reason"] in ("NONE", "MEDICAL", "DOSAGE", "COST", "ADMIN")
    assert (lines[0]["verdict"] == "VALID") == (lines[0]["reason"] == "NONE")
    assert 0 <= lines[0]["confidence"] <= 1
    assert "empty" in lines[1]["error"]
    assert "limit" in lines[2]["error"]
    assert "error" in lines[3]
    assert "Traceback" not in result.stderr


def test_predict_from_csv(trained_run: Path, tmp_path: Path) -> None:
    good = tmp_path / "claims.csv"
    good.write_text('text,verdict\n"Appendicitis, appendectomy, $100,000",INVALID\n')
    result = run_cli("predict", "--run", str(trained_run), "--csv", str(good))
    assert result.returncode == 0 and json.loads(result.stdout)["text"].startswith("Appendicitis")
    bad = tmp_path / "bad.csv"
    bad.write_text("claim;amount\nfoo;1\n")
    result = run_cli("predict", "--run", str(trained_run), "--csv", str(bad))
    assert result.returncode == 2 and "no 'text' column" in result.stderr and "Traceback" not in result.stderr


def test_analyze_labels_every_head_with_evidence(trained_run: Path) -> None:
    result = run_cli("analyze", "--run", str(trained_run))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    heads = report["heads"]["decoder.0.cross"]
    assert len(heads) == 4
    for head in heads:
        assert head["label"] and head["evidence"]
        assert set(head["ablation"]) == {"VALID", "MEDICAL", "DOSAGE", "COST", "ADMIN"}
        assert sum(head["shares"].values()) == pytest.approx(1.0, abs=1e-3)


def test_analyze_scores_claims_from_the_runs_data_stream_not_its_seed(trained_run: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[int] = []
    real = inference.generate_claims
    def recording(n: int, seed: int, catalog=None):
        drawn.append(seed)
        return real(n, seed, catalog)

    monkeypatch.setattr(inference, "generate_claims", recording)
    inference.analyze_run(trained_run, claims=100)
    assert drawn == [HELDOUT_SEED_OFFSET]  # data seed 0's held-out stream, though the run's seed is 3


def test_bad_settings_and_missing_runs_are_one_line(tmp_path: Path) -> None:
    result = run_cli("train", "--out", str(tmp_path / "x"), "--lr", "-1")
    assert result.returncode == 2 and "lr must be in (0, 10]" in result.stderr and "Traceback" not in result.stderr
    result = run_cli("predict", "--run", str(tmp_path / "nothing"), stdin="x\n")
    assert result.returncode == 2 and "missing" in result.stderr and "Traceback" not in result.stderr


def test_corrupt_and_malicious_checkpoints_are_refused(trained_run: Path, tmp_path: Path) -> None:
    import shutil

    for name, payload in {
        "truncated": (trained_run / "checkpoints" / "latest.pt").read_bytes()[:100],
        "random": bytes(range(256)) * 10,
    }.items():
        copy = tmp_path / name
        shutil.copytree(trained_run, copy)
        (copy / "checkpoints" / "latest.pt").write_bytes(payload)
        result = run_cli("predict", "--run", str(copy), stdin="diabetes, metformin 500 mg, $20\n")
        assert result.returncode == 2 and "cannot be loaded safely" in result.stderr, result.stderr
