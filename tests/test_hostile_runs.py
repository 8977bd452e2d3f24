"""Run folders are copied and shared between people: every file in one is treated as possibly hostile.

No path outside the runs folder is read or served, reads are bounded, and a damaged folder is listed as damaged
with its reason; loading its model gives a plain RunError, never another exception."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
import torch

from engine.core import Engine
from engine.interpret.inference import Predictor
from engine.runs.layout import MAX_RECORD_BYTES
from engine.runs.listing import RunError, list_runs, remove_stale_temp_files
from engine.runs.replay import replay
from engine.runs.words import STATUS_DAMAGED

SECRET = "root:x:0:0:the secret outside the runs folder"


@pytest.fixture
def runs(tmp_path: Path, trained_run_folder: Path) -> Path:
    """A runs folder holding one copy of the session's trained run, named 'good', and a secret file beside it."""
    folder = tmp_path / "runs"
    shutil.copytree(trained_run_folder, folder / "good")
    (tmp_path / "secret.txt").write_text(SECRET)
    return folder


def copy_run(runs: Path, name: str) -> Path:
    shutil.copytree(runs / "good", runs / name)
    return runs / name


def summary(runs: Path, name: str):
    return next(s for s in list_runs(runs) if s.run_id == name)


def assert_plain(message: str, *paths: Path) -> None:
    """A message for a page: no server path, no exception class, no advice to load an untrusted file unsafely."""
    for path in paths:
        assert str(path) not in message
    assert "weights_only" not in message and "Error:" not in message and "Traceback" not in message


def test_a_checkpoint_linked_to_a_file_outside_is_never_served(runs: Path, tmp_path: Path) -> None:
    link = copy_run(runs, "linked")
    (link / "checkpoints" / "latest.pt").unlink()
    (link / "checkpoints" / "latest.pt").symlink_to(tmp_path / "secret.txt")
    engine = Engine(runs_dir=runs)
    with pytest.raises(RunError, match="link to a file outside its run folder") as refused:
        engine.checkpoint_bytes("linked")
    assert SECRET not in str(refused.value)
    with pytest.raises(RunError, match="outside its run folder"):
        Predictor.from_run(link)


def test_the_exported_weights_are_a_plain_state_dict(runs: Path) -> None:
    from engine.model.transformer import ModelConfig
    from engine.task.claims_model import ClaimsTransformer

    exported = torch.load(__import__("io").BytesIO(Engine(runs_dir=runs).checkpoint_bytes("good")), weights_only=True)
    config = json.loads((runs / "good" / "config.json").read_text())
    model = ClaimsTransformer(ModelConfig.from_dict(config["model"]))
    model.load_state_dict(exported)  # what a user does with the download


def test_a_run_folder_that_is_a_link_is_listed_as_damaged_and_not_opened(runs: Path, tmp_path: Path) -> None:
    outside = shutil.copytree(runs / "good", tmp_path / "elsewhere")
    (runs / "linked-folder").symlink_to(outside)
    listed = summary(runs, "linked-folder")
    assert listed.status == "damaged" and "link" in listed.problem
    engine = Engine(runs_dir=runs)
    with pytest.raises(RunError, match="link"):
        engine.replay("linked-folder")
    with pytest.raises(RunError, match="link"):
        engine.checkpoint_bytes("linked-folder")


@pytest.mark.parametrize("name", ["config.json", "metrics.jsonl", "status.json", "tokenizer.json"])
def test_files_linked_to_a_device_are_refused_without_reading(runs: Path, name: str) -> None:
    run = copy_run(runs, "zero")
    (run / name).unlink()
    (run / name).symlink_to("/dev/zero")
    listed = summary(runs, "zero")  # returns at once: /dev/zero read without a bound would exhaust memory
    if name in ("config.json", "metrics.jsonl"):
        assert listed.status == "damaged" and name in listed.problem
    if name == "status.json":  # how the run ended is unknown; what it saved can still be shown
        assert listed.status == "unknown" and "status.json is damaged" in replay(run).message
        return
    with pytest.raises(RunError, match="outside its run folder"):
        replay(run) if name != "tokenizer.json" else Predictor.from_run(run)


def test_a_pipe_in_place_of_a_file_does_not_hang(runs: Path) -> None:
    run = copy_run(runs, "pipe")
    (run / "metrics.jsonl").unlink()
    os.mkfifo(run / "metrics.jsonl")
    started = time.monotonic()
    assert "not a plain file" in summary(runs, "pipe").problem
    assert time.monotonic() - started < 5


def test_an_endless_metrics_line_is_skipped_with_a_bounded_read(runs: Path) -> None:
    run = copy_run(runs, "long-line")
    good_steps = replay(run).step
    with open(run / "metrics.jsonl", "a") as file:
        file.write(
            '{"type": "step", "step": 999999, "loss": 1.0, "seconds": 1.0, "pad": "'
            + "x" * 3 * MAX_RECORD_BYTES
            + '"}\n'
        )
    assert replay(run).step == good_steps
    assert summary(runs, "long-line").problem is None


DAMAGES = {
    "config is a list": ("config.json", "[1, 2]"),
    "config seed is text": ("config.json", {"seed": "x"}),
    "config learning rate is text": ("config.json", {"lr": "fast"}),
    "config without steps": ("config.json", {"steps": None}),
    "a metrics line is a list": ("metrics.jsonl", "[1, 2]\n"),
    "an eval step is text": ("metrics.jsonl", '{"type": "eval", "step": "x"}\n'),
    "an eval record of the wrong types": (
        "metrics.jsonl",
        '{"type": "eval", "step": 5, "seconds": "x", '
        '"train_loss": 1, "heldout_loss": 1, "train_accuracy": 1, '
        '"heldout_accuracy": 1, "train_per_class": [], "heldout_per_class": 1}\n',
    ),
    "a specialization record with a numeric label": (
        "metrics.jsonl",
        '{"type": "specialization", "step": 9, "heads": {"decoder.0.cross": [{"label": 5}]}}\n',
    ),
    "a record type that is a list": ("metrics.jsonl", '{"type": [1]}\n'),
    **{
        f"a head that owns {what}": (
            "metrics.jsonl",
            '{"type": "specialization", "step": 9, "heads": '
            '{"decoder.0.cross": [{"shares": {"drug": 1}, "entropy": 1, "confidence": 1, '
            '"importance": 1, "ablation": {}, "label": "x", "evidence": "y", ' + extra + "}]}}\n",
        )
        for what, extra in (
            ("no reason", '"owns": "<b>HACK</b>"'),
            ("answers as a list", '"answers": [1]'),
            ("necessity as text", '"necessity": {"MEDICAL": "all"}'),
            ("a kind as a number", '"kind": 5'),
            ("rivals that are no heads", '"rivals": [100]'),
        )
    },
    "config seed too large for a table": ("config.json", {"seed": 10**40}),
    "an eval step too large for a table": (
        "metrics.jsonl",
        '{"type": "eval", "step": 1000000000000000000000000000000, '
        '"seconds": 1, "train_loss": 1, "heldout_loss": 1, "train_accuracy": 1, '
        '"heldout_accuracy": 1, "train_per_class": {}, "heldout_per_class": {}}\n',
    ),
    "a specialization record without heads": (
        "metrics.jsonl",
        '{"type": "specialization", "step": 9, "heads": {"decoder.0.cross": []}}\n',
    ),
    "an optimizer record without heads": (
        "metrics.jsonl",
        '{"type": "optim", "step": 9, "heads": {"decoder.0.cross": []}, "groups": {}}\n',
    ),
    "config with no heads in a run of its own": (
        "config.json",
        {"model": {"n_heads": 0, "heads": {"decoder.0.cross": 4}}},
    ),
    "config optimizer name that is markup": ("config.json", {"optimizer_name": "<b>[click](http://x)</b>"}),
    "status is a list": ("status.json", "[1]"),
    "status ended by exploding": ("status.json", {"ended_by": "exploded"}),
    "status that finished by diverging": ("status.json", {"ended_by": "diverged", "loss": "nan", "kept": "none"}),
    "status diverged without its loss": ("status.json", {"status": "diverged", "ended_by": "diverged"}),
    "status unsaved for a reason in markup": ("status.json", {"unsaved": {"run": "<b>[click](http://x)</b>"}}),
    "status unsaved of files it never writes": ("status.json", {"unsaved": {"/etc/passwd": "ENOSPC"}}),
    "status failed for a reason that is a number": (
        "status.json",
        {"status": "failed", "ended_by": "failed", "failure": "refused", "problem": 5},
    ),
    "config format is text": ("config.json", {"format": "2"}),
    "probe is a dict": ("probe.json", '{"a": 1}'),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged_files_are_a_reason_never_a_crash(runs: Path, damage: str) -> None:
    run = copy_run(runs, "damaged")
    name, content = DAMAGES[damage]
    if isinstance(content, dict):  # settings changed (None: removed)
        config = {**json.loads((run / name).read_text()), **content}
        content = json.dumps({k: v for k, v in config.items() if v is not None})
    if name == "metrics.jsonl":
        with open(run / name, "a") as file:
            file.write(content)
    else:
        (run / name).write_text(content)
    listed = summary(runs, "damaged")  # never raises
    if damage.startswith("config"):
        assert listed.status == "damaged" and "config.json is damaged" in listed.problem
        assert_plain(listed.problem, run)
    elif damage.startswith("status"):
        assert listed.problem is None and listed.status == "unknown" and "status.json is damaged" in listed.note
        assert replay(run).message == STATUS_DAMAGED
    else:
        assert listed.problem is None and listed.step == 300 and len(listed.heads) == 4
    try:
        snap = replay(run)
    except RunError as error:
        assert_plain(str(error), run)
    else:
        good = replay(runs / "good")
        assert snap.step == 300 and (len(snap.evals), len(snap.optim), len(snap.specialization)) == (
            len(good.evals),
            len(good.optim),
            len(good.specialization),
        )


def vocabulary(run: Path, change) -> None:
    saved = json.loads((run / "tokenizer.json").read_text())
    (run / "tokenizer.json").write_text(json.dumps(change(saved)))


def checkpoint(run: Path, change) -> None:
    path = run / "checkpoints" / "latest.pt"
    payload = torch.load(path, weights_only=True)
    torch.save({**payload, "model": change(payload["model"])}, path)


BAD_MODELS = {
    "an empty checkpoint": (lambda run: (run / "checkpoints" / "latest.pt").write_bytes(b""), "damaged"),
    "a duplicate word": (
        lambda run: vocabulary(run, lambda t: {**t, "vocab": [*t["vocab"][:-1], t["vocab"][5]]}),
        "tokenizer.json is damaged",
    ),
    "a short vocabulary": (lambda run: vocabulary(run, lambda t: {**t, "vocab": t["vocab"][:-3]}), "words"),
    "a tokenizer of another format": (
        lambda run: (run / "tokenizer.json").write_text('{"vocab": 3}'),
        "tokenizer.json is damaged",
    ),
    "a tokenizer that is a list": (lambda run: (run / "tokenizer.json").write_text("[]"), "tokenizer.json"),
    "a number among the weights": (lambda run: checkpoint(run, lambda w: {**w, "extra": 5}), "plain weights"),
    "weights on the meta device": (
        lambda run: checkpoint(run, lambda w: {k: v.to("meta") for k, v in w.items()}),
        "plain weights",
    ),
    "sparse weights": (
        lambda run: checkpoint(run, lambda w: {k: v.to_sparse() for k, v in w.items()}),
        "plain weights",
    ),
    "float8 weights": (
        lambda run: checkpoint(
            run, lambda w: {k: v.to(torch.float8_e4m3fn) if v.is_floating_point() else v for k, v in w.items()}
        ),
        "plain weights",
    ),
    "quantised weights": (
        lambda run: checkpoint(
            run,
            lambda w: {
                k: torch.quantize_per_tensor(v, 0.1, 0, torch.qint8) if v.is_floating_point() else v
                for k, v in w.items()
            },
        ),
        "damaged|plain weights",
    ),
    "an extra tensor": (lambda run: checkpoint(run, lambda w: {**w, "secret": torch.zeros(3)}), "match"),
    "an empty alias": (
        lambda run: vocabulary(run, lambda t: {**t, "aliases": {next(iter(t["aliases"])): [""]}}),
        "tokenizer.json is damaged",
    ),
    "huge model settings": (
        lambda run: (run / "config.json").write_text(
            json.dumps({**json.loads((run / "config.json").read_text()), "model": {"d_model": 10**9, "n_heads": 4}})
        ),
        "match",
    ),
    "impossible model settings": (
        lambda run: (run / "config.json").write_text(
            json.dumps({**json.loads((run / "config.json").read_text()), "model": {"d_model": "wide", "n_heads": 4}})
        ),
        "config",
    ),
}


@pytest.mark.parametrize("damage", list(BAD_MODELS))
def test_a_model_that_cannot_be_loaded_is_a_plain_run_error(runs: Path, damage: str) -> None:
    run = copy_run(runs, "bad-model")
    spoil, expected = BAD_MODELS[damage]
    spoil(run)
    with pytest.raises(RunError, match=expected) as refused:
        Predictor.from_run(run)
    assert_plain(str(refused.value), run)


def test_nan_weights_are_refused_in_words(runs: Path) -> None:
    run = copy_run(runs, "nan")
    path = run / "checkpoints" / "latest.pt"
    payload = torch.load(path, weights_only=True)
    payload["model"] = {
        k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in payload["model"].items()
    }
    torch.save(payload, path)
    with pytest.raises(RunError, match="not all numbers"):
        Predictor.from_run(run)


def test_stale_temporary_files_of_killed_runs_are_removed(runs: Path) -> None:
    stale = runs / "good" / "checkpoints" / ".latest.pt.k1ll3d.tmp"
    fresh = runs / "good" / "attention" / ".step_000000001.pt.wr1t1ng.tmp"
    mine = runs / "good" / "notes.tmp"
    for path in (stale, fresh, mine):
        path.write_bytes(b"half a checkpoint")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    os.utime(mine, (old, old))
    remove_stale_temp_files(runs)
    assert not stale.exists() and fresh.exists() and mine.exists()


@pytest.mark.parametrize("name", ["x..y", "run\n"])
def test_run_ids_that_cannot_be_opened_are_not_listed(runs: Path, name: str) -> None:
    shutil.copytree(runs / "good", runs / name)
    assert name not in {s.run_id for s in list_runs(runs)}


def test_the_weights_download_holds_only_the_models_own_tensors(runs: Path) -> None:
    import io

    exported = torch.load(io.BytesIO(Engine(runs_dir=runs).checkpoint_bytes("good")), weights_only=True)
    saved = torch.load(runs / "good" / "checkpoints" / "latest.pt", weights_only=True)["model"]
    assert exported.keys() == saved.keys() and all(torch.equal(exported[k], saved[k]) for k in saved)


def test_a_run_is_read_again_only_when_its_files_change(runs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.runs.listing

    read = []
    real = engine.runs.listing.summarize
    monkeypatch.setattr(engine.runs.listing, "summarize", lambda folder: read.append(folder.name) or real(folder))
    copy_run(runs, "other")
    first = list_runs(runs)
    assert sorted(read) == ["good", "other"]
    assert list_runs(runs) == first and len(read) == 2  # nothing changed: nothing read again
    with open(runs / "other" / "metrics.jsonl", "a") as metrics:
        metrics.write('{"type": "step", "step": 99999, "loss": 0.5, "seconds": 9.0}\n')
    assert summary(runs, "other").step == 99999  # the grown file, read again
    assert read[2:] == ["other"]  # only the run whose file grew
    (runs / "other" / "status.json").write_text("{ damaged")
    assert summary(runs, "other").status == "unknown" and read[3:] == ["other"]


def test_an_attention_file_with_nothing_in_it_is_skipped(runs: Path) -> None:
    run = copy_run(runs, "empty-attention")
    torch.save({}, run / "attention" / "step_000009999.pt")
    torch.save({"decoder.0.cross": torch.zeros(3, 0, 2, 9)}, run / "attention" / "step_000009998.pt")  # no heads
    snap = replay(run)
    assert snap.attention and snap.attention[-1].step == replay(runs / "good").attention[-1].step
