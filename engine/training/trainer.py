"""The training loop in a background thread: start, pause, resume, stop and reset, safe from any thread, and the
live model it publishes. It reports into a TelemetryHub and, when given a folder, into the run's files."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType

import torch

from data.tokenizer import Tokenizer
from engine.interpret.inference import Predictor
from engine.model.transformer import ModelConfig
from engine.recording.events import Event, Observer, Status, Weights
from engine.recording.observers import HubObserver, WriterObserver
from engine.recording.tensorboard_files import TensorBoardObserver
from engine.runs.ending import Ending, error_code
from engine.runs.listing import RunError
from engine.runs.words import warning_text
from engine.runs.writer import RunWriter, WriterLock
from engine.task.claims_csv import CsvProblem, build_data_from_csv
from engine.task.claims_model import sized_for_claims
from engine.task.dataset import POOL_CACHE, ClaimData, build_data, unsaved_pool_cache
from engine.telemetry import TelemetryHub
from engine.training.config import ConfigError, TrainConfig
from engine.training.loop import RunControl, TrainingLoop
from engine.training.observers import ProbeObserver
from engine.training.threads import THREADS, ThreadLease


class EngineBusy(RuntimeError):
    """A run is already training; stop or reset it first."""


@dataclass(frozen=True)
class LiveModel:
    """The live run's latest weights with what it takes to use them, published in one assignment: whoever reads it
    never pairs one run's weights with another run's settings or vocabulary."""

    step: int
    weights: Mapping[str, torch.Tensor]  # a copy that later steps cannot change
    model_config: ModelConfig
    tokenizer: Tokenizer

    def predictor(self) -> Predictor:
        return Predictor.from_weights(self.model_config, self.tokenizer, dict(self.weights), self.step)


def pick_device(config: TrainConfig) -> torch.device:
    if config.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(config.device)


def prepare_data(config: TrainConfig, folder: Path | None) -> ClaimData:
    """The run's claims: a user's file, or generated ones (a pool cached beside the runs, or in the user's cache)."""
    if config.claims_csv:
        return build_data_from_csv(Path(config.claims_csv), config.data_seed, config.model.max_len)
    cache = folder.parent / POOL_CACHE if folder is not None else unsaved_pool_cache()
    return build_data(config.data_seed, config.pool_size, config.heldout_size, config.model.max_len, cache)


def _failure(error: Exception) -> Ending:
    """How training failed: our own errors are written for users, and kept; anything else is logged for whoever
    runs the server, and the page gets no exception text."""
    if isinstance(error, ConfigError | CsvProblem | RunError):
        return Ending("failed", failure="refused", problem=str(error))
    logging.getLogger("headwatch").error("training failed", exc_info=error)
    return Ending("failed", failure="unexpected")


def _folder_observers(writer: RunWriter, config: TrainConfig, data: ClaimData, hub: HubObserver) -> list[Observer]:
    """What saves the run into its folder: its files, where its verdicts form, and TensorBoard's when asked for.
    Each, should it stop writing, tells the run's viewers; each is heard before the run's own files, so its files
    are complete before the run's status says it ended."""
    probes = ProbeObserver(writer.folder, data, config.steps, hub.hear, writer)
    kept: list[Observer] = [probes, WriterObserver(writer, hub.hear)]
    if config.tensorboard:  # first: its last events are written, or their failure known, before the run's status
        kept.insert(0, TensorBoardObserver(writer.folder, hub.hear, writer))
    return kept


def _let_go(folder: Path | None, lock: WriterLock | None, writer: RunWriter | None) -> None:
    """Release a run's folder once it can no longer write. One whose writer never opened holds only what this run
    put there since it took the lock (the folder was empty then): it is not left behind."""
    if folder is not None and writer is None:
        shutil.rmtree(folder, ignore_errors=True)
    if lock is not None:
        lock.release()


class _Publisher:
    """Keeps the trainer's live model up to date with the loop's weights."""

    def __init__(self, trainer: Trainer, tokenizer: Tokenizer, model_config: ModelConfig, generation: int) -> None:
        self.trainer, self.tokenizer, self.model_config, self.generation = trainer, tokenizer, model_config, generation

    def hear(self, event: Event) -> None:
        if isinstance(event, Weights):
            live = LiveModel(event.step, MappingProxyType(dict(event.tensors)), self.model_config, self.tokenizer)
            self.trainer.publish(live, self.generation)


class Trainer:
    """Owns at most one training thread and the model it trains."""

    def __init__(self, hub: TelemetryHub, observers: Sequence[Observer] = ()) -> None:
        self.hub = hub
        self.observers = list(observers)  # heard by every run, after the hub and the run's folder
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._control = RunControl()
        self._live: LiveModel | None = None
        self.generation = 0  # bumped by start and reset: a thread of an older generation must not write any more
        self.data: ClaimData | None = None
        self.config: TrainConfig | None = None  # as asked for by whoever started the run
        # the files of the run that were not all written (engine.runs.ending.FILES) and why, once it ended
        self.unsaved: dict[str, str] = {}

    @property
    def active(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def live_model(self) -> LiveModel | None:
        """The latest consistent weights of this trainer's run (taken by the training thread between steps)."""
        return self._live

    def publish(self, live: LiveModel, generation: int) -> None:
        """Make `live` the model pages use, unless its run was reset or replaced since (one assignment: readers see
        the old record or the new one, whole)."""
        with self._lock:
            if generation == self.generation:
                self._live = live

    def start(
        self, config: TrainConfig, folder: Path | None = None, run_id: str | None = None, lock: WriterLock | None = None
    ) -> None:
        """Train in the background, into `folder` when given: its writer lock (`lock`, or taken here: RunError when
        another process writes there) is held until the run ends."""
        config.validate()
        with self._lock:
            if self.active:
                raise EngineBusy("A run is already training: stop or reset it first.")
            threads = THREADS.lease(config.threads)
            if folder is not None and lock is None:
                try:
                    lock = WriterLock(folder)
                except BaseException:
                    threads.release()
                    raise
            self.generation += 1
            self._control = control = RunControl()
            self._live, self.unsaved, self.config = None, {}, config
            self.hub.begin(run_id, str(folder) if folder else None, config.to_dict(), config.steps)
            self._thread = threading.Thread(
                target=self._run,
                args=(config, folder, lock, self.generation, threads, control),
                daemon=True,
                name="headwatch-trainer",
            )
            self._thread.start()

    def pause(self) -> None:
        with self._lock:
            if self.active:
                self._control.pause()

    def resume(self) -> None:
        with self._lock:
            self._control.resume()

    def stop(self, timeout: float = 2.0) -> None:
        """Ask the run to stop and wait up to `timeout` s (a page must not freeze while data is still being built:
        the thread then stops as soon as preparation ends)."""
        self._control.stop()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def reset(self) -> None:
        """Forget the run. A thread still preparing data is left to exit on its own; it writes nothing more."""
        with self._lock:
            self.generation += 1
        self.stop(timeout=5.0)
        with self._lock:
            self._live = self.data = self.config = None
            self.hub.reset()

    def _run(
        self,
        config: TrainConfig,
        folder: Path | None,
        lock: WriterLock | None,
        generation: int,
        threads: ThreadLease,
        control: RunControl,
    ) -> None:
        hub = HubObserver(self.hub, lambda: self.generation == generation)
        observers: list[Observer] = [hub]
        writer, loop, started = None, None, time.perf_counter()
        try:
            data = prepare_data(config, folder)
            if generation != self.generation:
                _let_go(folder, lock, None)
                return  # reset while preparing: this run no longer exists
            config = replace(config, model=sized_for_claims(config.model, data.tokenizer))
            writer = self._open_writer(folder, lock, config, data, hub) if folder is not None else None
            if writer is not None:  # the run's folder first: whoever sees the run end finds it ended on disk too
                observers[:0] = _folder_observers(writer, config, data, hub)
            self.data = data
            observers += [_Publisher(self, data.tokenizer, config.model, generation), *self.observers]
            ending = Status("stopped", 0, 0.0, Ending("stopped"))
            if not control.stopping.is_set():
                loop = TrainingLoop(config, data, observers, threads, control, device=pick_device(config))
                ending = loop.run(started, prepare_seconds=time.perf_counter() - started)
        except Exception as error:
            ending = Status("failed", loop.step if loop else 0, loop.seconds if loop else 0.0, _failure(error))
        finally:
            threads.release()
        try:
            self._end(observers, ending)
        finally:
            if writer is not None:
                writer.close()
                self.unsaved = writer.unsaved
            _let_go(folder, lock, writer)

    @staticmethod
    def _end(observers: list[Observer], ending: Status) -> None:
        """Every observer hears how the run ended, even when one before it fails to (its error is logged)."""
        for observer in observers:
            try:
                observer.hear(ending)
            except Exception as error:
                logging.getLogger("headwatch").error("an observer could not take the run's end", exc_info=error)

    def _open_writer(
        self, folder: Path, lock: WriterLock, config: TrainConfig, data: ClaimData, hub: HubObserver
    ) -> RunWriter | None:
        """The run's writer; when its folder cannot be written (a full disk) the run trains on unsaved and says so
        (its empty folder goes when the run ends)."""
        try:
            return RunWriter(folder, config.to_dict(), data.tokenizer.to_json(), data.probe_claims, lock)
        except OSError as error:
            self.unsaved = {"folder": error_code(error)}
            if hub.current():
                self.hub.set_unsaved(warning_text("folder", self.unsaved["folder"]))
            return None
