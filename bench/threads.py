"""Intra-op threads: 1, 2 and the default (measured as the run goes, engine.training.threads.ThreadTuner), on an idle
machine and with a competing process that keeps one core busy (as a viewer's browser or another program would).

Run: .venv/bin/python -m bench.threads [--steps 600] [--repeats 2]
Each run trains the default recipe for `steps` with full telemetry; runs are interleaved and the median training
steps/s per setting is printed with its ratio to one thread in the same condition.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.telemetry import TelemetryHub
from engine.training.presets import preset
from engine.training.trainer import Trainer

SETTINGS = {"1 thread": 1, "2 threads": 2, "measured (default)": 0}


@contextmanager
def busy_core(on: bool) -> Iterator[None]:
    """A process spinning on one core, or nothing."""
    process = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if on else None
    try:
        yield
    finally:
        if process is not None:
            process.kill()
            process.wait()


def steps_per_second(threads: int, steps: int, folder: Path) -> float:
    config = preset("default")
    config.steps, config.threads = steps, threads
    hub = TelemetryHub()
    trainer = Trainer(hub)
    trainer.start(config, folder=folder, run_id=folder.name)  # the claim pool is cached beside the runs
    while trainer.active:
        time.sleep(0.1)
    snapshot = hub.snapshot()
    assert snapshot.status == "finished", snapshot.message
    return snapshot.step / snapshot.seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    results: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        steps_per_second(1, 10, Path(folder) / "warm-up")  # builds the cached claim pool once
        for repeat in range(args.repeats):
            for condition in ("idle", "one core busy"):
                with busy_core(condition != "idle"):
                    for name, threads in SETTINGS.items():
                        run = Path(folder) / f"r{repeat}-{condition.replace(' ', '-')}-{threads}"
                        speed = steps_per_second(threads, args.steps, run)
                        results.setdefault((condition, name), []).append(speed)
                        print(f"repeat {repeat}, {condition}, {name}: {speed:.1f} steps/s", flush=True)
    print(f"{'condition':<14} | {'threads':<18} | {'steps/s':>7} | {'vs 1 thread':>11}")
    for condition in ("idle", "one core busy"):
        one = statistics.median(results[(condition, "1 thread")])
        for name in SETTINGS:
            speed = statistics.median(results[(condition, name)])
            print(f"{condition:<14} | {name:<18} | {speed:>7.1f} | {speed / one:>10.2f}x")


if __name__ == "__main__":
    main()
