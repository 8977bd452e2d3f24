"""Command line: `python -m engine train|predict|analyze|study|reference`. Errors are one plain line on stderr,
never a traceback."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO, TextIO

import torch

from engine.interpret.inference import MAX_CLAIM_CHARS, Predictor
from engine.reports.analyze import analyze_run, probe_report
from engine.reports.reference_studies import write_reference
from engine.reports.study import MAX_SEEDS, PARENT_ENV, parse_seeds, run_study
from engine.reports.study_words import summary_sentence
from engine.runs.layout import CONFIG, RUN_FILES
from engine.runs.reading import RunError
from engine.runs.words import save_problem, unsaved_text
from engine.runs.writer import WriterLock, empty_folder, holds_only_its_lock
from engine.task.claims_csv import CsvProblem, read_claims_file
from engine.telemetry import Snapshot, TelemetryHub
from engine.training.config import OPTIMIZERS, REASON_BALANCES, ConfigError, TrainConfig
from engine.training.presets import PRESETS, preset
from engine.training.trainer import Trainer

CLI_MAX_CSV_BYTES = 50 * 2**20  # the app takes 5 MB uploads; a file on disk may be larger
CLI_MAX_CSV_ROWS = 500_000
PR_SET_PDEATHSIG = 1  # prctl(2)
PREDICT_BATCH = 256  # claims judged in one forward pass by `predict`; answers are flushed after each batch
READ_BYTES = 1 << 16  # `predict` reads what has arrived on stdin, up to this much at a time
MAX_LINE_BYTES = 4 * MAX_CLAIM_CHARS  # UTF-8 spends at most 4 bytes a character: a longer line is too long a claim


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description="Headwatch engine")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_train(commands.add_parser("train", help="train a run into a folder"))
    predict = commands.add_parser("predict", help="judge claims (one per line on stdin, or --csv)")
    predict.add_argument("--run", type=Path, required=True)
    predict.add_argument("--csv", type=Path)
    analyze = commands.add_parser("analyze", help="per-head specialization of a saved run")
    analyze.add_argument("--run", type=Path, required=True)
    analyze.add_argument(
        "--probes",
        action="store_true",
        help="instead: where each reason's verdict forms, probed at each field of a claim (a table)",
    )
    _add_study(
        commands.add_parser("study", help="train one recipe with several seeds; what their heads have in common")
    )
    _add_reference(
        commands.add_parser(
            "reference",
            help="ship a finished study's summary with Headwatch, dated, with the command that reproduces it",
        )
    )
    return parser


def _add_train(train: argparse.ArgumentParser) -> None:
    train.add_argument("--out", type=Path, required=True, help="a new or empty folder for the run")
    train.add_argument("--replace", action="store_true", help="delete the run already in --out first")
    train.add_argument("--preset", default="default", choices=sorted(PRESETS))
    train.add_argument("--seed", type=int, help="starting weights and the order claims are drawn in")
    train.add_argument("--data-seed", type=int, help="which claims are generated (default 0, as in the app)")
    train.add_argument("--steps", type=int)
    train.add_argument("--target-accuracy", type=float)
    train.add_argument("--max-seconds", type=float)
    train.add_argument("--optimizer", choices=OPTIMIZERS)
    train.add_argument("--lr", type=float)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--weight-decay", type=float, help="Adam's decoupled weight decay (default 0: none)")
    train.add_argument(
        "--reason-balance",
        choices=REASON_BALANCES,
        help="how training batches are drawn: 'generated' (default: half valid, an eighth per reason) "
        "or 'even' (valid and each reason a fifth)",
    )
    train.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write TensorBoard event files into the run's folder (tensorboard --logdir runs/)",
    )
    train.add_argument(
        "--threads",
        type=int,
        help="intra-op threads (default 1: the same seed repeats the run exactly); 0 measures 1 vs 2 "
        "as it trains, faster on an idle machine but not repeatable",
    )
    _add_model_options(train)


def _add_model_options(train: argparse.ArgumentParser) -> None:
    train.add_argument(
        "--no-nothing-slot",
        action="store_true",
        help='heads get no "nothing" slot to look at (the recipe gives every head one)',
    )
    train.add_argument(
        "--sparse-attention",
        action="store_true",
        help="heads weigh words with entmax 1.5 instead of softmax, so a word can get exactly zero",
    )
    train.add_argument(
        "--cross-value-dim",
        type=int,
        help="width of each cross-attention head's values and output (default: d_model / heads)",
    )
    train.add_argument(
        "--cross-head-gate",
        action="store_true",
        help="a sigmoid gate on each cross-attention head's output, from the decoder's input",
    )
    train.add_argument(
        "--sparse-encoder", action="store_true", help="the encoder's heads alone weigh words with entmax 1.5"
    )
    train.add_argument(
        "--cross-learned-alpha",
        action="store_true",
        help="each cross-attention head learns its own entmax alpha in (1, 2], starting at 1.5",
    )


def _add_study(study: argparse.ArgumentParser) -> None:
    study.add_argument("--out", type=Path, required=True, help="the study's folder (an interrupted study resumes)")
    study.add_argument("--seeds", default="0-4", help=f"e.g. 0-4 or 0,2,5 (default 0-4; at most {MAX_SEEDS})")
    study.add_argument("--preset", default="default", choices=sorted(PRESETS))
    study.add_argument("--steps", type=int)
    study.add_argument("--parallel", type=int, default=2, help="seeds trained at once, one core each (default 2)")
    study.add_argument(
        "train_options",
        nargs=argparse.REMAINDER,
        help="after --: more `train` options for every seed, e.g. -- --weight-decay 0.01",
    )


def _add_reference(reference: argparse.ArgumentParser) -> None:
    reference.add_argument("study_folder", type=Path, help="the folder `python -m engine study --out` trained")
    reference.add_argument("--name", help="the recipe's name on the pages (default: the folder's name)")
    reference.add_argument("--seeds", help="ship only these measured seeds, e.g. 0-5 (default: all the study's)")
    reference.add_argument(
        "--into",
        type=Path,
        help="where to write <name>.json (default: engine/reports/reference_studies, shipped with Headwatch)",
    )


def _first_reach(snap: Snapshot, level: float) -> dict | None:
    """Where held-out accuracy first reached `level`: its step, training seconds, and wall seconds from the start
    (setup included: the claims, the model, the optimizer, the step-0 measurement)."""
    point = snap.first_reaching(level)
    if point is None:
        return None
    return {
        "step": point.step,
        "seconds": round(point.seconds, 2),
        "wall_seconds": round(point.seconds + snap.setup_seconds, 2),
    }


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The recipe `train` was asked for, with the options given on the command line, checked."""
    config = preset(args.preset)
    asked = {
        "seed": args.seed,
        "data_seed": args.data_seed,
        "steps": args.steps,
        "target_accuracy": args.target_accuracy,
        "max_seconds": args.max_seconds,
        "optimizer": args.optimizer,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "weight_decay": args.weight_decay,
        "reason_balance": args.reason_balance,
    }
    model = config.model
    model = replace(
        model,
        null_key=model.null_key and not args.no_nothing_slot,
        sparse_attention=model.sparse_attention or args.sparse_attention,
        cross_head_gate=model.cross_head_gate or args.cross_head_gate,
        sparse_encoder=model.sparse_encoder or args.sparse_encoder,
        cross_learned_alpha=model.cross_learned_alpha or args.cross_learned_alpha,
        cross_value_dim=model.cross_value_dim if args.cross_value_dim is None else args.cross_value_dim,
    )
    config = replace(
        config,
        **{name: value for name, value in asked.items() if value is not None},
        tensorboard=args.tensorboard,
        model=model,
    )
    config.validate()
    return config


def train(args: argparse.Namespace) -> int:
    config = train_config(args)
    if parent_gone():
        raise RunError("the study that started this seed has ended, so it is not trained")
    lock = WriterLock(args.out)  # held from here: nothing else writes or deletes the folder while this trains
    try:
        _make_room(args.out, args.replace)
    except BaseException:
        lock.release()
        raise
    hub = TelemetryHub()
    trainer = Trainer(hub)
    trainer.start(config, folder=args.out, run_id=args.out.name, lock=lock)
    signal.signal(signal.SIGTERM, lambda *_: trainer.stop(timeout=0))  # as Stop does: its folder says it stopped
    last_print = 0.0
    while trainer.active:
        time.sleep(0.2)
        snap = hub.snapshot()
        if time.monotonic() - last_print >= 2.0 and snap.status == "running":
            accuracy = f"{snap.latest_eval.heldout_accuracy:.1%}" if snap.latest_eval else "-"
            print(
                f"step {snap.step}/{snap.total_steps}  loss {snap.loss.values[-1] if snap.loss.values else 0:.4f}"
                f"  held-out {accuracy}  {snap.steps_per_second:.1f} steps/s",
                file=sys.stderr,
                flush=True,
            )
            last_print = time.monotonic()
    snap = hub.snapshot()
    latest = snap.latest_eval
    result = {
        "status": snap.status,
        "message": snap.message,
        "steps": snap.step,
        "seconds": round(snap.seconds, 2),
        "steps_per_second": round(snap.step / snap.seconds, 2) if snap.seconds else 0.0,
        "accuracy": latest.heldout_accuracy if latest else None,
        "per_class": latest.heldout_per_class if latest else {},
        "chance": snap.chance,
        "no_better_than_chance": snap.no_better_than_chance,
        "prepare_seconds": round(snap.prepare_seconds, 2),
        "setup_seconds": round(snap.setup_seconds, 2),
        "reached": {f"{level:.0%}": _first_reach(snap, level) for level in (0.9, 0.95, 0.98)},
        "run": str(args.out),
        **_saving(trainer.unsaved, config.tensorboard),
    }
    print(json.dumps(result))
    return 0 if snap.status in ("finished", "stopped") and not trainer.unsaved else 1


def _saving(unsaved: dict[str, str], tensorboard: bool) -> dict:
    """Whether the run's files, and its TensorBoard files, were all saved, and if not why (in words)."""
    problem = save_problem(unsaved)
    return {
        "saved": problem is None,
        "save_problem": problem,
        "tensorboard_saved": tensorboard and "tensorboard" not in unsaved,
        "tensorboard_problem": unsaved_text("tensorboard", unsaved["tensorboard"])
        if "tensorboard" in unsaved
        else None,
    }


def _make_room(out: Path, replace: bool) -> None:
    """Two runs never mix in one folder: one already in `out` (whose writer lock the caller holds) is refused, or
    deleted when asked to."""
    if holds_only_its_lock(out):
        return
    if not replace:
        raise RunError(
            f"{out} already holds files; pass --replace to delete the run there first, or choose another --out"
        )
    others = sorted(p.name for p in out.iterdir() if p.name not in RUN_FILES)
    if not (out / CONFIG).is_file() or others:
        found = f" (it holds {', '.join(others[:3])})" if others else ""
        raise RunError(f"{out} is not a Headwatch run folder{found}, so --replace does not delete it")
    empty_folder(out)


def parent_gone() -> bool:
    """Whether the study that started this seed's worker has already ended; from here on its end sends SIGTERM
    (Linux's parent-death signal). False for a train started by anything else."""
    parent = os.environ.get(PARENT_ENV)
    if parent is None:
        return False
    with contextlib.suppress(OSError, AttributeError):  # Linux only; elsewhere the study stops its workers itself
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    return str(os.getppid()) != parent


class _Overlong:
    """A line too long to be one claim: its start is kept for the answer, the rest is counted, never held."""

    def __init__(self, start: bytes, size: int) -> None:
        self.start, self.size = start, size

    def answer(self) -> dict:
        return {
            "text": self.start.decode("utf-8", errors="replace")[:MAX_CLAIM_CHARS],
            "error": f"The claim is more than {MAX_CLAIM_CHARS:,} characters long (its line holds {self.size:,} "
            f"bytes); the limit is {MAX_CLAIM_CHARS:,}, and text holds its first {MAX_CLAIM_CHARS:,} only."
            " Put one claim per line.",
        }


class _LineSplitter:
    """Bytes as they arrive, cut into lines: a line is decoded whatever the locale (a byte that is not UTF-8 spoils
    its own line only), and one longer than MAX_LINE_BYTES is an _Overlong, so no line can fill the memory."""

    def __init__(self) -> None:
        self.pending = b""  # the start of a line whose end has not arrived
        self.overlong: _Overlong | None = None  # the line being read past

    def feed(self, chunk: bytes) -> list[str | _Overlong]:
        lines: list[str | _Overlong] = []
        if self.overlong is not None:
            end = chunk.find(b"\n")
            self.overlong.size += len(chunk) if end < 0 else end
            if end < 0:
                return lines
            lines.append(self.overlong)
            self.overlong, chunk = None, chunk[end + 1 :]
        *complete, self.pending = (self.pending + chunk).split(b"\n")
        lines += [_line(piece) for piece in complete]
        if len(self.pending) > MAX_LINE_BYTES:
            self.overlong, self.pending = _Overlong(self.pending[:MAX_LINE_BYTES], len(self.pending)), b""
        return lines

    def end(self) -> list[str | _Overlong]:
        """The last line, when the input does not end with a line break."""
        if self.overlong is not None:
            return [self.overlong]
        return [_line(self.pending)] if self.pending else []


def _line(piece: bytes) -> str | _Overlong:
    if len(piece) > MAX_LINE_BYTES:
        return _Overlong(piece[:MAX_LINE_BYTES], len(piece))
    return piece.decode("utf-8", errors="replace").rstrip("\r")


def _line_batches(stream: BinaryIO, batch_size: int = PREDICT_BATCH) -> Iterator[list[str | _Overlong]]:
    """The lines of `stream` in batches of those that have arrived, up to `batch_size`: a pipe is read in batches,
    while a person typing gets each line answered as soon as it is entered."""
    splitter = _LineSplitter()
    while chunk := stream.read1(READ_BYTES):  # what has arrived, waiting only while nothing has
        lines = splitter.feed(chunk)
        yield from (lines[start : start + batch_size] for start in range(0, len(lines), batch_size))
    if last := splitter.end():
        yield last


def _answers(predictor: Predictor, batch: Sequence[str | _Overlong]) -> list[dict]:
    """Each line's answer, in order, the claims among them judged in one batch."""
    judged = iter(predictor.predict_many([line for line in batch if isinstance(line, str)]))
    return [next(judged).to_json() if isinstance(line, str) else line.answer() for line in batch]


def answer_lines(predictor: Predictor, stream: BinaryIO, out: TextIO, batch_size: int = PREDICT_BATCH) -> None:
    """One JSON answer per line of `stream`, in order, written and flushed a batch at a time."""
    for batch in _line_batches(stream, batch_size):
        out.write("".join(json.dumps(answer) + "\n" for answer in _answers(predictor, batch)))
        out.flush()


def predict(args: argparse.Namespace) -> int:
    # one thread, as train uses by default: with other processes busy on this 2-core machine (load 3 to 7), two
    # threads answered 300-800 claims/s where one answered 1,700-3,000
    torch.set_num_threads(1)
    predictor = Predictor.from_run(args.run)
    if not args.csv:
        answer_lines(predictor, sys.stdin.buffer, sys.stdout)
        return 0
    # blank rows are skipped: each answer names the line of the file its claim is on
    claims = read_claims_file(args.csv, CLI_MAX_CSV_BYTES, CLI_MAX_CSV_ROWS)
    for start in range(0, len(claims.texts), PREDICT_BATCH):
        lines, texts = claims.lines[start : start + PREDICT_BATCH], claims.texts[start : start + PREDICT_BATCH]
        answers = [
            {"line": line, **prediction.to_json()}
            for line, prediction in zip(lines, predictor.predict_many(texts), strict=True)
        ]
        print("".join(json.dumps(answer) + "\n" for answer in answers), end="", flush=True)
    return 0


def analyze(args: argparse.Namespace) -> int:
    if args.probes:
        print("\n".join(probe_report(args.run)))
        return 0
    print(json.dumps(analyze_run(args.run), indent=1))
    return 0


def study(args: argparse.Namespace) -> int:
    try:
        seeds = parse_seeds(args.seeds)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    cores = len(os.sched_getaffinity(0))
    if not 1 <= args.parallel <= cores:
        raise ConfigError(f"--parallel is at most the {cores} cores this machine has (each seed trains on one)")
    extra = args.train_options[1:] if args.train_options[:1] == ["--"] else args.train_options
    train_args = ["--preset", args.preset, *(["--steps", str(args.steps)] if args.steps else []), *extra]
    record = run_study(args.out, seeds, train_args, args.parallel, echo=lambda line: print(line, flush=True))
    if record["summary"]:
        print(summary_sentence(record["summary"]))
    print(json.dumps(record["summary"]))
    return 1 if record["failures"] else 0


def reference(args: argparse.Namespace) -> int:
    try:
        seeds = parse_seeds(args.seeds) if args.seeds else None
    except ValueError as error:
        raise ConfigError(str(error)) from None
    print(write_reference(args.study_folder, args.name, args.into, seeds))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return {"train": train, "predict": predict, "analyze": analyze, "study": study, "reference": reference}[
            args.command
        ](args)
    except (ConfigError, RunError, CsvProblem, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
