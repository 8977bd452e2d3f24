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
from pathlib import Path

import torch

from engine.interpret.claim_lines import PREDICT_BATCH, answer_lines
from engine.interpret.inference import Predictor
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
from engine.training.config import ConfigError
from engine.training.presets import PRESETS
from engine.training.train_options import add_train_options, train_config
from engine.training.trainer import Trainer

CLI_MAX_CSV_BYTES = 50 * 2**20  # the app takes 5 MB uploads; a file on disk may be larger
CLI_MAX_CSV_ROWS = 500_000
PR_SET_PDEATHSIG = 1  # prctl(2)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description="Headwatch engine")
    commands = parser.add_subparsers(dest="command", required=True)
    add_train_options(commands.add_parser("train", help="train a run into a folder"))
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
