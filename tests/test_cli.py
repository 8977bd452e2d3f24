"""CLI round trip as a user runs it: train, predict, analyze; bad input gives one plain line."""

import io
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from engine.interpret.inference import Predictor
from engine.interpret.labels import head_label
from engine.reports.analyze import analyze_run
from engine.runs.reading import load_checkpoint
from engine.runs.replay import replay

ROOT = Path(__file__).resolve().parents[1]
# Every test runs `python -m engine` in a new process, most on a run trained for the file: slow. Under `make test`
# the file runs on one worker, so that run is trained once.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("cli")]


def run_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "engine", *args], input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=300
    )


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "run1"
    started = time.perf_counter()
    result = run_cli("train", "--out", str(out), "--preset", "quick", "--steps", "120", "--seed", "3", "--tensorboard")
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


def test_predict_json_says_what_was_read_and_what_cannot_be_judged(trained_run: Path) -> None:
    claims = "Heart transplant for a common cold, 54 yo F, $5\nMetformn 500 mg for diabetes, $10\n"
    result = run_cli("predict", "--run", str(trained_run), stdin=claims)
    assert result.returncode == 0, result.stderr
    unread, misspelled = (json.loads(line) for line in result.stdout.splitlines())
    assert unread["verdict"] is None and unread["model_said"]["verdict"] in ("VALID", "INVALID")
    # every answer rests on the billed item, which was not read; some on the diagnosis too
    assert "item" in unread["cannot_judge"]["parts"] and set(unread["cannot_judge"]["parts"]) <= {"diagnosis", "item"}
    assert "'Heart transplant' is not a diagnosis, drug or procedure Headwatch knows" in unread["cannot_judge"]["why"]
    assert unread["reading"]["parts_not_read"] == ["diagnosis", "item"]
    assert unread["reading"]["not_read"] == ["Heart transplant", "common cold"]
    assert {"text": "$5", "as": "amount", "meaning": "$5.00"} in unread["reading"]["read"]
    assert misspelled["cannot_judge"] is None and misspelled["verdict"] in ("VALID", "INVALID")
    assert misspelled["reading"]["notes"] == ["read 'Metformn' as metformin"]
    assert {"text": "Metformn", "as": "drug", "meaning": "Metformin", "read_as_near": "metformin"} in (
        misspelled["reading"]["read"]
    )


def test_predict_from_csv(trained_run: Path, tmp_path: Path) -> None:
    good = tmp_path / "claims.csv"
    good.write_text('text,verdict,reason\n"Appendicitis, appendectomy, $100,000",INVALID,COST\n')
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
        assert head["owns"] in (None, "MEDICAL", "DOSAGE", "COST", "ADMIN")
        assert (
            set(head["necessity"])
            == set(head["sufficiency"])
            == {"MEDICAL", "DOSAGE", "COST", "sex", "age", "specialty", "place"}
        )
        assert set(head["answers"]["VALID"]) == {"VALID", "MEDICAL", "DOSAGE", "COST", "ADMIN"}
        assert isinstance(head["selectivity"], float) and set(head["pair_ablation"]) == {"0", "1", "2", "3"} - {
            str(heads.index(head))
        }
        assert head["intervention"] == "resampled"
    assert "sees what it saw on claims of the same kind" in report["interventions"]["ablation"]
    assert report["minimal_pairs"] > 100
    assert all(head["owns"] is None for head in report["heads"]["encoder.0.self"])  # measured on cross-attention
    assert report["owners"] == {f"decoder.0.cross head {i}": h["owns"] for i, h in enumerate(heads) if h["owns"]}


def test_analyze_names_the_heads_exactly_as_training_measured_them(trained_run: Path) -> None:
    report = analyze_run(trained_run)
    last = replay(trained_run).specialization[-1]
    assert report["step"] == last.step == 120 and report["claims_source"] == "the run's held-out claims"
    for recorded, measured in zip(last.heads["decoder.0.cross"], report["heads"]["decoder.0.cross"], strict=True):
        assert (measured["label"], measured["owns"]) == (head_label(recorded), recorded.owns)
        assert measured["selectivity"] == pytest.approx(recorded.selectivity, abs=1e-5)
        assert measured["necessity"] == pytest.approx(recorded.necessity, abs=1e-5)
        assert measured["ablation"] == pytest.approx(recorded.ablation, abs=1e-5)


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
        assert result.returncode == 2 and "damaged or holds more than model weights" in result.stderr, result.stderr


def test_the_same_settings_and_seed_train_the_same_model(trained_run: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    result = run_cli("train", "--out", str(again), "--preset", "quick", "--steps", "120", "--seed", "3")
    assert result.returncode == 0, result.stderr

    def losses(run: Path) -> list:
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [(r["step"], r["loss"]) for r in records if r["type"] == "step"]

    assert losses(again) == losses(trained_run) and len(losses(again)) == 120
    weights = [load_checkpoint(run)["model"] for run in (trained_run, again)]
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])


def test_train_never_mixes_two_runs_in_one_folder(trained_run: Path, tmp_path: Path) -> None:
    import shutil

    out = shutil.copytree(trained_run, tmp_path / "existing")
    before = (out / "metrics.jsonl").read_bytes()
    result = run_cli("train", "--out", str(out), "--preset", "quick", "--steps", "30")
    assert result.returncode == 2 and "already holds files" in result.stderr and "--replace" in result.stderr
    assert (out / "metrics.jsonl").read_bytes() == before
    not_a_run = tmp_path / "my-notes"
    not_a_run.mkdir()
    (not_a_run / "notes.txt").write_text("keep me")
    result = run_cli("train", "--out", str(not_a_run), "--replace", "--preset", "quick", "--steps", "30")
    assert result.returncode == 2 and "not a Headwatch run folder" in result.stderr
    assert (not_a_run / "notes.txt").read_text() == "keep me"
    (not_a_run / "config.json").write_text("{}")  # a project of someone's that happens to have a config.json
    result = run_cli("train", "--out", str(not_a_run), "--replace", "--preset", "quick", "--steps", "30")
    assert result.returncode == 2 and "(it holds notes.txt)" in result.stderr
    assert (not_a_run / "notes.txt").read_text() == "keep me"

    result = run_cli("train", "--out", str(out), "--replace", "--preset", "quick", "--steps", "30")
    assert result.returncode == 0, result.stderr
    steps = [
        json.loads(line)["step"]
        for line in (out / "metrics.jsonl").read_text().splitlines()
        if json.loads(line)["type"] == "step"
    ]
    assert steps == list(range(1, 31))  # only the new run: no steps 1..120 of the old one before it
    assert not [p for p in (out / "attention").iterdir() if int(p.stem.split("_")[1]) > 30]


def test_status_json_keeps_the_step_a_run_ended_at(tmp_path: Path) -> None:
    out = tmp_path / "limited"
    result = run_cli(
        "train",
        "--out",
        str(out),
        "--preset",
        "quick",
        "--steps",
        "100000",
        "--max-seconds",
        "3",
        "--no-nothing-slot",
        "--sparse-attention",
    )
    assert result.returncode == 0, result.stderr
    final = json.loads(result.stdout.strip().splitlines()[-1])
    status = json.loads((out / "status.json").read_text())
    assert (status["status"], status["ended_by"], status["time_limit"]) == ("finished", "time_limit", 3)
    assert replay(out).message == final["message"] == f"Time limit of 3 s reached at step {final['steps']}"
    assert status["step"] == final["steps"] > 0 and final["saved"] is True and final["save_problem"] is None
    model = json.loads((out / "config.json").read_text())["model"]
    assert (model["null_key"], model["sparse_attention"]) == (False, True)  # as asked
    assert not any(name.endswith("null_key") for name in load_checkpoint(out)["model"])
    assert Predictor.from_run(out).model.config.sparse_attention  # and read back so


def test_the_levers_of_issue_29_are_train_options_and_a_bad_width_is_refused_in_words(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from engine.__main__ import main, parser
    from engine.training.train_options import train_config

    args = parser().parse_args(
        [
            "train",
            "--out",
            str(tmp_path / "run"),
            "--cross-value-dim",
            "4",
            "--cross-head-gate",
            "--sparse-encoder",
            "--cross-learned-alpha",
        ]
    )
    model = train_config(args).model
    assert (model.cross_value_dim, model.cross_head_gate, model.sparse_encoder, model.cross_learned_alpha) == (
        4,
        True,
        True,
        True,
    )
    plain = train_config(parser().parse_args(["train", "--out", str(tmp_path / "run")])).model
    assert (plain.cross_value_dim, plain.cross_head_gate, plain.sparse_encoder, plain.cross_learned_alpha) == (
        None,
        False,
        False,
        False,
    )
    assert main(["train", "--out", str(tmp_path / "run"), "--preset", "quick", "--cross-value-dim", "0"]) == 2
    assert capsys.readouterr().err == "error: cross value dim must be a whole number in [1, 256] (got 0)\n"
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_a_full_disk_is_in_the_summary_and_the_exit_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import errno

    import engine.runs.writer as runs
    from engine.__main__ import main

    real = runs.atomic_write_bytes

    def full_disk(path: Path, data: bytes) -> None:
        if path.suffix == ".pt":
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    monkeypatch.setattr(runs, "atomic_write_bytes", full_disk)
    code = main(["train", "--out", str(tmp_path / "full"), "--preset", "quick", "--steps", "40"])
    final = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 1 and final["saved"] is False and "No space left on device" in final["save_problem"]
    status = json.loads((tmp_path / "full" / "status.json").read_text())  # the folder says so too
    assert status["status"] == "finished" and status["unsaved"] == {"run": "ENOSPC"}
    assert replay(tmp_path / "full").message.endswith("Its files stopped being saved partway (No space left on device)")


def test_predict_survives_bytes_that_are_not_utf8_under_a_strict_locale(trained_run: Path) -> None:
    env = {**__import__("os").environ, "LC_ALL": "C.UTF-8", "PYTHONUTF8": "0", "PYTHONIOENCODING": "utf-8:strict"}
    result = subprocess.run(
        [sys.executable, "-m", "engine", "predict", "--run", str(trained_run)],
        cwd=ROOT,
        input=b"Asthma, montelukast 10 mg, $30\ncaf\xe9 \xff claim\nGout, colchicine 60 mg\n",
        capture_output=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert len(lines) == 3 and lines[0]["verdict"] and lines[2]["verdict"]  # the lines around the bad byte are judged


class Trickle(io.BytesIO):
    """Input arriving a few bytes at a time: lines, and characters, are cut across reads."""

    def read1(self, size: int = -1) -> bytes:
        return super().read1(7)


def confidence(answer: dict) -> float | None:
    """The model's confidence, also when the claim could not be judged (then it is what the model said anyway)."""
    return (answer.get("model_said") or answer).get("confidence")


def without_confidence(answer: dict) -> dict:
    said = {"model_said": {**answer["model_said"], "confidence": None}} if answer.get("model_said") else {}
    return {**answer, "confidence": None, **said}


def test_predict_in_batches_answers_as_judging_one_claim_at_a_time(trained_run: Path) -> None:
    """The same answers, but for a confidence's last decimal now and then: a batch's matrix products add in another
    order, which moves probabilities by about 1e-7, across a rounding boundary for 4 claims in 5,000 measured."""
    from data.generator import generate_claims
    from engine.interpret.claim_lines import answer_lines

    lines = [
        b"Diabetes patient, Metformin 500mg, $150",
        b"",
        b"hello there",
        b"!!! ???",
        b"x" * 6000,
        "café ünïcode, Asthma, montelukast 10 mg, $30".encode(),
        b"caf\xe9 \xff claim, Gout, colchicine",
        b"Flu, flu test, $90\r",
        b"Diabetes, zorblatex 500 mg, $40",
        *(c.text.replace("\n", ", ").encode() for c in generate_claims(40, seed=5)),
        b"no line break at the end",
    ]
    predictor = Predictor.from_run(trained_run)
    one_at_a_time = [
        predictor.predict(line.decode("utf-8", errors="replace").rstrip("\r"), with_ablation=False).to_json()
        for line in lines
    ]
    for stream, batch_size in ((io.BytesIO(b"\n".join(lines)), 256), (Trickle(b"\n".join(lines)), 5)):
        out = io.StringIO()
        answer_lines(predictor, stream, out, batch_size)
        answers = [json.loads(line) for line in out.getvalue().splitlines()]
        assert [without_confidence(a) for a in answers] == [without_confidence(a) for a in one_at_a_time]
        assert [confidence(a) for a in answers] == pytest.approx([confidence(a) for a in one_at_a_time], abs=1.5e-4)
    assert "limit is 5,000" in one_at_a_time[4]["error"] and one_at_a_time[6]["text"].startswith("caf\ufffd \ufffd")
    assert one_at_a_time[8]["verdict"] is None and one_at_a_time[8]["model_said"]  # a drug it does not know


def test_predict_answers_a_huge_binary_line_in_one_short_line_and_goes_on(trained_run: Path) -> None:
    binary = bytes(b for b in range(256) if b != ord("\n")) * 120_000  # 30.6 MB of every byte but a line break
    claims = b"Asthma, montelukast 10 mg, $30\n" + binary + b"\nGout, colchicine 60 mg\n" + binary
    result = subprocess.run(
        [sys.executable, "-m", "engine", "predict", "--run", str(trained_run)],
        cwd=ROOT,
        input=claims,
        capture_output=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    answers = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert len(answers) == 4 and answers[0]["verdict"] and answers[2]["verdict"]
    for huge in answers[1], answers[3]:
        assert len(huge["text"]) == 5000 and "verdict" not in huge
        assert huge["error"].startswith(
            f"The claim is more than 5,000 characters long (its line holds {len(binary):,} bytes)"
        )


def test_predict_answers_each_line_as_it_is_typed(trained_run: Path) -> None:
    """Batches hold the lines that have arrived: a line typed alone is answered before the next is typed."""
    process = subprocess.Popen(
        [sys.executable, "-m", "engine", "predict", "--run", str(trained_run)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        for claim in ("Asthma, montelukast 10 mg, $30", "hello"):
            process.stdin.write(claim + "\n")
            process.stdin.flush()
            assert json.loads(process.stdout.readline())["text"] == claim
    finally:
        process.stdin.close()
        process.wait(timeout=60)
    assert process.returncode == 0


def test_predict_reads_csv_as_the_app_does(trained_run: Path, tmp_path: Path) -> None:
    bom = tmp_path / "excel.csv"
    bom.write_bytes('\ufefftext;verdict\n"Diabetes; metformin 500 mg; $40";VALID\nFlu, flu test, $90;\n'.encode())
    result = run_cli("predict", "--run", str(trained_run), "--csv", str(bom))
    assert result.returncode == 0, result.stderr
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(a["line"], a["text"][:8]) for a in answers] == [(2, "Diabetes"), (3, "Flu, flu")]
    unquoted = tmp_path / "unquoted.csv"
    unquoted.write_text("text\nDiabetes, metformin 500 mg, $40\n")
    result = run_cli("predict", "--run", str(trained_run), "--csv", str(unquoted))
    assert result.returncode == 2 and "Line 2" in result.stderr and "double quotes" in result.stderr


def test_an_empty_checkpoint_is_one_plain_line(trained_run: Path, tmp_path: Path) -> None:
    import shutil

    copy = shutil.copytree(trained_run, tmp_path / "empty-checkpoint")
    (copy / "checkpoints" / "latest.pt").write_bytes(b"")
    for command in ("predict", "analyze"):
        result = run_cli(command, "--run", str(copy), stdin="diabetes, metformin 500 mg\n")
        assert result.returncode == 2 and "Traceback" not in result.stderr and "damaged" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_train_writes_tensorboard_files_when_asked(trained_run: Path) -> None:
    """TensorBoard's own event reader finds what the run recorded (the fixture trains with --tensorboard)."""
    from test_tensorboard import read_events

    events, snap = read_events(trained_run), replay(trained_run)
    held_out = events.Scalars("accuracy/held-out")
    assert [(e.step, e.value) for e in held_out] == [(p.step, pytest.approx(p.heldout_accuracy)) for p in snap.evals]
    assert len(events.Scalars("loss/train")) == snap.step == 120
    for name in snap.attention_names:
        assert len(events.Images(f"attention/{name} head 1")) == len(snap.attention)
        assert len(events.Scalars(f"adaptive scale (mean √v)/{name} head {snap.n_heads}")) == len(snap.optim)
    assert any(tag.startswith("heads/") for tag in events.Tags()["tensors"])  # what each head was found to do


def test_analyze_probes_prints_the_table_and_where_each_verdict_forms(trained_run: Path, tmp_path: Path) -> None:
    result = run_cli("analyze", "--run", str(trained_run), "--probes")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Where the verdict forms at step 120: can a linear probe tell each reason's claims")
    header = next(i for i, line in enumerate(lines) if "billed item" in line)
    assert [line.split()[0] for line in lines[header + 1 : header + 5]] == ["MEDICAL", "DOSAGE", "COST", "ADMIN"]
    assert all(
        any(line.startswith(f"{reason} forms ") for line in lines) for reason in ("MEDICAL", "DOSAGE", "COST", "ADMIN")
    )
    assert any(line.startswith("The billed item is ") for line in lines)
    assert lines[-1] == "Recorded while training at steps 0, 120."
    copy = tmp_path / "run-without-probes"
    shutil.copytree(trained_run, copy)
    (copy / "probes.json").unlink()  # a run trained before runs recorded them: measured all the same
    result = run_cli("analyze", "--run", str(copy), "--probes")
    assert result.returncode == 0 and result.stdout.splitlines()[-1].startswith("None was recorded while training")
