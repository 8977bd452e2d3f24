"""Kill -9 of a writer at a random moment, then a resume or a new run in the same place, over and over: nothing
finished is lost, no folder holds two runs, no worker outlives its study.

Run: .venv/bin/python -m bench.kill_writers [--rounds 20] [--seed 0]
Each round picks one writer: a `train` run (then `train --replace` into its folder), a study's runner, or a server
process holding a study in a background thread as the dashboard does (then the same study is resumed); kills it with
SIGKILL after a random 0.5-8 s; and checks, once the resume or new run has ended:
- every seed the study had finished before the kill is still in study.json, with the same accuracy;
- every run folder holds one run: its config names its own seed, its steps never go back, its status says finished;
- no process still holds a run folder's writer lock, and none of the killed writer's workers is alive.
Prints a line per round and the count of rounds that broke any of these (target 0); exits 1 if any did.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from engine.reports.study_results import STUDY
from engine.runs.layout import CONFIG, METRICS, STATUS
from engine.runs.writer import WriterLock

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["--preset", "quick", "--steps", "100000", "--max-seconds", "4"]
STUDY_ARGS = ["--preset", "quick", "--seeds", "0-2", "--steps", "100000", "--", "--max-seconds", "4"]
SERVER = """
import sys, time
from pathlib import Path
from engine.reports.study import BackgroundStudy
study = BackgroundStudy(Path(sys.argv[1]), [0, 1, 2], ["--preset", "quick", "--steps", "100000", "--max-seconds", "4"])
while study.active:
    time.sleep(0.2)
"""


def engine(*args: str) -> list[str]:
    return [sys.executable, "-m", "engine", *args]


def one_run(folder: Path) -> list[str]:
    """What is wrong with a run folder that should hold one finished run (nothing when all is well)."""
    problems = []
    config = json.loads((folder / CONFIG).read_text())
    if folder.name.startswith("seed-") and config["seed"] != int(folder.name.removeprefix("seed-")):
        problems.append(f"{folder.name} holds seed {config['seed']}'s run")
    steps = [r["step"] for r in map(json.loads, (folder / METRICS).read_text().splitlines()) if r["type"] == "step"]
    if steps != sorted(steps) or len(set(steps)) != len(steps):
        problems.append(f"{folder.name}: its steps go back (two runs mixed)")
    status = json.loads((folder / STATUS).read_text())["status"]
    if status != "finished":
        problems.append(f"{folder.name} ended {status}")
    if WriterLock.holder(folder):
        problems.append(f"{folder.name} is still written by {WriterLock.holder(folder)}")
    return problems


def finished_seeds(out: Path) -> dict[int, float]:
    try:
        return {r["seed"]: r["accuracy"] for r in json.loads((out / STUDY).read_text())["results"]}
    except (OSError, ValueError):
        return {}


def workers(out: Path) -> list[int]:
    holders = (WriterLock.holder(folder) for folder in out.glob("seed-*") if folder.is_dir())
    return [int(holder.split()[1]) for holder in holders if holder and holder.split()[-1].isdigit()]


def alive(process: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{process}/status").read_text()
    except OSError:
        return False


def kill_round(kind: str, place: Path, delay: float) -> list[str]:
    if kind == "train":
        first, again = (
            engine("train", "--out", str(place), *TRAIN),
            engine("train", "--out", str(place), "--replace", *TRAIN),
        )
    elif kind == "study":
        first = again = engine("study", "--out", str(place), *STUDY_ARGS)
    else:
        first, again = [sys.executable, "-c", SERVER, str(place)], engine("study", "--out", str(place), *STUDY_ARGS)
    writer = subprocess.Popen(first, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    before, orphans = finished_seeds(place), workers(place)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    deadline = time.monotonic() + 30
    while (any(alive(p) for p in orphans) or workers(place)) and time.monotonic() < deadline:
        time.sleep(0.2)  # a worker started just before the kill may still be on its way out
    problems = [f"worker {p} outlived its study" for p in {*orphans, *workers(place)} if alive(p)]
    ended = subprocess.run(again, cwd=ROOT, capture_output=True, text=True, timeout=300)
    if ended.returncode != 0:
        problems.append(f"the resume failed: {(ended.stderr or ended.stdout).strip()[-300:]}")
    after = finished_seeds(place)
    problems += [f"seed {s} was lost or changed" for s, accuracy in before.items() if after.get(s) != accuracy]
    folders = [place] if kind == "train" else sorted(f for f in place.glob("seed-*") if f.is_dir())
    return problems + [p for folder in folders for p in one_run(folder)]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    broken = 0
    with tempfile.TemporaryDirectory() as scratch:
        for round_number in range(args.rounds):
            kind, delay = rng.choice(["train", "study", "server"]), rng.uniform(0.5, 8.0)
            problems = kill_round(kind, Path(scratch) / f"round-{round_number}", delay)
            broken += bool(problems)
            print(
                f"round {round_number + 1:2d}: kill -9 of a {kind:6s} after {delay:4.1f} s: "
                f"{'; '.join(problems) or 'nothing lost, one run per folder'}",
                flush=True,
            )
    print(f"{broken} of {args.rounds} rounds lost data, mixed runs or left a worker (target 0)")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
