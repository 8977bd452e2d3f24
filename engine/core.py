"""The one object a process holds: the main run, the optional SGD race run, saved runs and predictions."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

from engine.cache import Cache
from engine.interpret.inference import Predictor
from engine.interpret.prediction import Prediction
from engine.interpret.scored_csv import scored_rows
from engine.recording.tensorboard_files import event_files, event_files_zip
from engine.reports.analyze import analyze_run
from engine.reports.study import BackgroundStudy
from engine.reports.study_results import SeedResult, read_study
from engine.runs.exports import csv_bytes, metrics_table
from engine.runs.layout import CHECKPOINT
from engine.runs.listing import (
    RunError,
    RunSummary,
    default_runs_dir,
    discard_run,
    list_runs,
    remove_stale_temp_files,
    resolve_run,
)
from engine.runs.replay import replay
from engine.runs.words import TRAINING_HERE
from engine.runs.writer import create_new_file, torch_bytes
from engine.task.claims_csv import ImportedClaims, read_claims_csv, trainable_claims
from engine.telemetry import Snapshot, TelemetryHub
from engine.training.config import ConfigError, TrainConfig
from engine.training.presets import PRESETS
from engine.training.schedule import load_optimizer_code
from engine.training.trainer import EngineBusy, LiveModel, Trainer

__all__ = ["TRAINING_NOW", "ConfigError", "Engine", "EngineBusy", "RunError", "RunsFolderError"]

TRAINING_NOW = "training now"
STUDIES = ".studies"  # seed studies, beside the runs (a dot: not a run folder)
MAX_STUDY_SEEDS = 10
SAVED_MODELS_KEPT = 4
FREE_SPACE_PROBE_BYTES = 2**20  # a run's first files (config, vocabulary, first checkpoint) take about this much


def reserve_run_id(runs_dir: Path, config: TrainConfig, suffix: str = "") -> str:
    """A new run's id, its folder made here and now: two servers on one runs folder pressing Train in the same
    second get two folders, never one."""
    base = f"{time.strftime('%Y%m%d-%H%M%S')}-{config.optimizer}-s{config.seed}{suffix}"
    run_id, n = base, 1
    while True:
        try:
            (runs_dir / run_id).mkdir()
            return run_id
        except FileExistsError:
            n += 1
            run_id = f"{base}-{n}"


class RunsFolderError(OSError):
    """The runs folder cannot be written; training can still start with save=False."""


class Engine:
    """Thread-safe facade used by the dashboard and the CLI; one per process."""

    def __init__(self, runs_dir: Path | None = None, save_runs: bool = True) -> None:
        threading.Thread(target=load_optimizer_code, daemon=True, name="headwatch-warmup").start()
        self.runs_dir = runs_dir or default_runs_dir()
        self.save_runs = save_runs
        remove_stale_temp_files(self.runs_dir)
        self.main = Trainer(TelemetryHub())
        self.race = Trainer(TelemetryHub())
        self._lock = threading.Lock()
        self._predictor: tuple[LiveModel, Predictor] | None = None
        # A few at once: Inspect and the Runs page's export may look at different runs.
        self._saved: Cache[Predictor] = Cache("saved runs' models", max_entries=SAVED_MODELS_KEPT, key=("run",))
        self.study: BackgroundStudy | None = None  # the seed study training now, or the last one

    def check_runs_folder(self) -> None:
        """Raise RunsFolderError, in plain words, if runs cannot be saved."""
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.runs_dir) as probe:  # a full disk still lets an empty file be made
                probe.write(bytes(FREE_SPACE_PROBE_BYTES))
                probe.flush()
                os.fsync(probe.fileno())
        except OSError as error:
            raise RunsFolderError(
                f"Runs cannot be saved in the runs folder: {error.strerror or error}. You can train without saving."
            ) from None

    def _folder(self, config: TrainConfig, save: bool, suffix: str = "") -> tuple[Path | None, str | None]:
        if not (self.save_runs and save):
            return None, None
        self.check_runs_folder()
        run_id = reserve_run_id(self.runs_dir, config, suffix)
        return self.runs_dir / run_id, run_id

    @staticmethod
    def _train(trainer: Trainer, config: TrainConfig, folder: Path | None, run_id: str | None) -> None:
        """Start `trainer`; a folder it may not write (another process's, a link) is a RunsFolderError."""
        try:
            trainer.start(config, folder, run_id)
        except RunError as error:
            if folder is not None:
                with contextlib.suppress(OSError):
                    folder.rmdir()  # the folder reserved for it, if nothing else was put there
            raise RunsFolderError(
                f"Runs cannot be saved in the runs folder: {error}. You can train without saving."
            ) from None

    def start(self, config: TrainConfig, save: bool = True) -> None:
        """Start the main run; RunsFolderError if it cannot be saved (then start(config, save=False) trains anyway)."""
        config.validate()
        with self._lock:
            if self.main.active:
                raise EngineBusy("A run is already training: stop or reset it first.")
            folder, run_id = self._folder(config, save)
            self._discard_empty_runs()
            self.race.reset()
            self._train(self.main, config, folder, run_id)

    def start_race(self, optimizer: str = "sgd", lr: float | None = None, save: bool | None = None) -> None:
        """Train the same data, seed and model under another optimizer, alongside the main run; saved beside it
        unless `save` says otherwise (RunsFolderError when it cannot be)."""
        with self._lock:
            if self.main.config is None:
                raise ConfigError("Start a run first: the race uses the main run's data and seed.")
            if self.race.active:
                raise EngineBusy("A race is already running.")
            base = self.main.config
            config = replace(
                TrainConfig.from_dict(base.to_dict()),
                optimizer=optimizer,
                lr=lr if lr is not None else 0.1,
                preset=f"{base.preset} (race)",
            )
            if save is None:
                save = self.main.hub.snapshot().run_dir is not None
            folder, run_id = self._folder(config, save, "-race")
            self._train(self.race, config, folder, run_id)

    def pause(self) -> None:
        self.main.pause()
        self.race.pause()

    def resume(self) -> None:
        self.main.resume()
        self.race.resume()

    def stop(self) -> None:
        self.race.stop()
        self.main.stop()

    def reset(self, only_if_idle: bool = False) -> None:
        """Forget the runs. `only_if_idle` refuses (EngineBusy) when one trains, checked under the same lock as
        start, so a page drawn before someone else pressed Train cannot throw their run away."""
        with self._lock:
            if only_if_idle and (self.main.active or self.race.active):
                raise EngineBusy("A run is training: stop it first, then reset.")
            self._discard_empty_runs()
            self.race.reset()
            self.main.reset()
            self._predictor = None

    def _discard_empty_runs(self) -> None:
        """Runs stopped before their first held-out measurement hold nothing to study: their folders go when the
        next run starts, so pressing Train and Stop over and over does not fill the Runs page."""
        for snap in (self.main.hub.snapshot(), self.race.hub.snapshot()):
            if snap.status == "stopped" and snap.run_id and snap.run_dir and all(e.step == 0 for e in snap.evals):
                discard_run(self.runs_dir, snap.run_id)

    def close(self) -> None:
        self.race.stop(timeout=30)
        self.main.stop(timeout=30)
        if self.study is not None:
            self.study.stop()

    def study_folder(self, preset_name: str, seeds: int) -> Path:
        """Where the study of seeds 0 .. seeds-1 of a preset lives: beside the runs, hidden from the Runs list."""
        return self.runs_dir / STUDIES / f"{preset_name}-seeds-0-{seeds - 1}"

    def _led_elsewhere(self, folder: Path) -> bool:
        """Whether a link would lead a study's files out of the runs folder."""
        return folder.parent.is_symlink() or folder.is_symlink()

    def start_study(self, preset_name: str, seeds: int) -> None:
        """Train seeds 0 .. seeds-1 of a preset in the background, two at a time (resuming one begun before)."""
        if preset_name not in PRESETS or not 2 <= seeds <= MAX_STUDY_SEEDS:
            raise ConfigError(f"a study trains one of {', '.join(PRESETS)} with 2 to {MAX_STUDY_SEEDS} seeds")
        with self._lock:
            if self.study is not None and self.study.active:
                raise EngineBusy("A seed study is already training: stop it first.")
            self.check_runs_folder()
            folder = self.study_folder(preset_name, seeds)
            if self._led_elsewhere(folder):
                raise RunsFolderError(
                    f"The runs folder's {STUDIES} holds a link to another place, so studies are not kept there."
                )
            self.study = BackgroundStudy(folder, range(seeds), ["--preset", preset_name])

    def saved_study(self, preset_name: str, seeds: int) -> tuple[dict, list[SeedResult]] | None:
        folder = self.study_folder(preset_name, seeds)
        return None if self._led_elsewhere(folder) else read_study(folder)

    def snapshot(self) -> Snapshot:
        return self.main.hub.snapshot()

    def race_snapshot(self) -> Snapshot:
        return self.race.hub.snapshot()

    def _training_now(self) -> set[str]:
        return {snap.run_id for snap in (self.snapshot(), self.race_snapshot()) if snap.active and snap.run_id}

    def list_runs(self) -> list[RunSummary]:
        """Saved runs, newest first; the ones this process is training now say so (on disk they look cut off)."""
        live = self._training_now()
        return [replace(run, status=TRAINING_NOW) if run.run_id in live else run for run in list_runs(self.runs_dir)]

    def analyze(self, run_id: str) -> dict:
        """The same report as `python -m engine analyze --run <folder>`."""
        return analyze_run(resolve_run(self.runs_dir, run_id))

    def metrics_csv(self, run_id: str) -> bytes:
        """A saved run's every recorded step: losses, accuracies, per-head Adam statistics and head names
        (engine.runs.exports.metrics_table)."""
        return csv_bytes(*metrics_table(resolve_run(self.runs_dir, run_id)))

    def tensorboard_files(self, run_id: str) -> list[str]:
        """The names of a saved run's TensorBoard event files (engine.recording.tensorboard_files); none for most
        runs."""
        return event_files(resolve_run(self.runs_dir, run_id))

    def tensorboard_zip(self, run_id: str) -> bytes:
        """A saved run's TensorBoard event files, zipped (engine.recording.tensorboard_files.event_files_zip)."""
        return event_files_zip(resolve_run(self.runs_dir, run_id))

    def checkpoint_bytes(self, run_id: str) -> bytes:
        """The saved run's latest weights as a plain PyTorch state_dict (`model.load_state_dict(torch.load(f))`),
        re-saved from the model they were checked and loaded into: never the bytes of a file that could be anything."""
        return torch_bytes(self.predictor(run_id).model.state_dict())

    def score_claims(
        self, claims: ImportedClaims, run_id: str | None = None, progress: Callable[[int], None] | None = None
    ) -> list[list[str]]:
        """An imported claims file scored by the live model or a saved run, beside the rules checker
        (engine.interpret.scored_csv.SCORED_COLUMNS); `progress` hears how many claims are scored so far."""
        predictor = self.predictor(run_id)
        if predictor is None:
            raise RunError("No model yet: press Train (or choose a saved run) first.")
        return scored_rows(predictor, claims, progress)

    def start_on_claims(self, data: bytes, config: TrainConfig, save: bool = True) -> None:
        """Train a new run on an uploaded claims CSV (checked first, so a bad file changes nothing)."""
        trainable_claims(read_claims_csv(data))
        self.check_runs_folder()
        imports = self.runs_dir / ".imports"
        if imports.is_symlink():
            raise RunsFolderError(
                "The runs folder's .imports is a link to another place, so claims files are not kept there."
            )
        imports.mkdir(exist_ok=True)
        path = imports / f"{hashlib.sha256(data).hexdigest()[:16]}.csv"
        with create_new_file(path) as file:
            file.write(data)
        self.start(replace(config, claims_csv=str(path)), save=save)

    def replay(self, run_id: str) -> Snapshot:
        """A saved run, read-only."""
        snap = replay(resolve_run(self.runs_dir, run_id))
        if run_id in self._training_now():
            return replace(snap, status="running", message=TRAINING_HERE)
        return snap

    def predictor(self, run_id: str | None = None) -> Predictor | None:
        """Current weights of the live run (or of a saved run); None before any weights exist."""
        with self._lock:
            if run_id is not None:
                return self._saved_predictor(run_id)
            live = self.main.live_model()
            if live is None:
                return None
            if self._predictor is None or self._predictor[0] is not live:  # held here: its address is not reused
                self._predictor = (live, live.predictor())
            return self._predictor[1]

    def _saved_predictor(self, run_id: str) -> Predictor:
        """A saved run's model, kept while its checkpoint file is unchanged."""
        folder = resolve_run(self.runs_dir, run_id)
        try:
            written = (folder / CHECKPOINT).stat()
            version: tuple = (written.st_mtime_ns, written.st_size)
        except OSError:
            version = ()
        return self._saved.get(partial(Predictor.from_run, folder), version=version, run=run_id)

    def predict(self, text: str, run_id: str | None = None) -> Prediction:
        try:
            predictor = self.predictor(run_id)
        except RunError as error:
            return Prediction(text=text, error=str(error))
        if predictor is None:
            return Prediction(text=text, error="No model yet: press Train (or open a saved run) first.")
        return predictor.predict(text)
