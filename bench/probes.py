"""Probe overhead: what recording where the verdict forms (engine.training.observers.ProbeObserver) adds to a
recipe's time to a held-out accuracy. The training loop bare (measure=False: forward, backward, update, and the
held-out evaluations a stop at the target needs) vs the same loop with the probe observer, same data, seed and steps.

Run: .venv/bin/python -m bench.probes [--preset default] [--target 0.95] [--repeats 1] [--threads 1]
Seconds count from the measurement before step 1, as a run's wall time to a level does. Runs are interleaved (bare,
probed, bare, probed, ...) so drift on a noisy machine hits both; prints each run's seconds to the target, the
seconds the probes took within them, and the ratio of median seconds. The table the observer records once the run
has stopped is not in its time to the target, as it is not in a real run's.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from engine.task.claims_model import sized_for_claims
from engine.task.dataset import ClaimData, build_data
from engine.training.config import TrainConfig
from engine.training.loop import TrainingLoop
from engine.training.observers import ProbeObserver
from engine.training.presets import preset
from engine.training.threads import THREADS


def to_target(config: TrainConfig, data: ClaimData, probed: bool) -> tuple[float, float]:
    """Seconds to the target from the first measurement before step 1 (which a run's wall time to a level counts as
    setup), and the probes' own seconds within them."""
    config = replace(config, model=sized_for_claims(config.model, data.tokenizer))
    with tempfile.TemporaryDirectory() as folder, THREADS.lease(config.threads) as threads:
        observers = [ProbeObserver(Path(folder), data, config.steps)] if probed else []
        loop = TrainingLoop(config, data, observers, threads, measure=False)
        started = time.perf_counter()
        ending = loop.run(started)
        seconds = time.perf_counter() - started
        probe_seconds = observers[0].seconds if probed else 0.0
    assert ending.status == "finished", ending.ending
    return seconds, probe_seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="default")
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    config = replace(preset(args.preset), target_accuracy=args.target, threads=args.threads)
    data = build_data(config.data_seed, config.pool_size, config.heldout_size, config.model.max_len)
    bare, probed = [], []
    for repeat in range(args.repeats):
        bare.append(to_target(config, data, probed=False)[0])
        probed.append(to_target(config, data, probed=True))
        print(
            f"repeat {repeat}: bare {bare[-1]:.1f} s, with probes {probed[-1][0]:.1f} s "
            f"(the probes' own {probed[-1][1]:.1f} s)",
            flush=True,
        )
    base, with_probes = statistics.median(bare), statistics.median(s for s, _ in probed)
    own = statistics.median(p for _, p in probed)
    print(
        f"{args.preset}, to {args.target:.0%} held-out, threads {args.threads}: bare {base:.1f} s, with probes "
        f"{with_probes:.1f} s (ratio {with_probes / base:.3f}); the probes' own seconds {own:.1f} "
        f"({own / with_probes:.1%} of the run's)"
    )


if __name__ == "__main__":
    main()
