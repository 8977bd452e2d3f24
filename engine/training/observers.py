"""The observer only a Headwatch claims run has: where its verdicts form (engine.interpret.probes), recorded into
the run's folder while it trains."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from engine.interpret.probes import ProbeTable, probe_table, probing_claims, recorded_steps, save_probes
from engine.model.transformer import ModelConfig
from engine.recording.events import Event, RunWarning, Status, Weights
from engine.runs.ending import error_code
from engine.runs.words import why
from engine.runs.writer import RunWriter
from engine.task.claims_model import ClaimsTransformer
from engine.task.dataset import ClaimData
from engine.telemetry import (
    ENDED_STATUSES,
)


class ProbeObserver:
    """Records where the verdict forms (engine.interpret.probes) into the run's folder, from the weights of the steps of
    `recorded_steps` and of the run's last step. It runs in the training thread, so its cost counts in the run's
    time: `seconds` is the total. A failure stops these tables only; `on_failed` hears of it once. Once the run's
    own files stop being saved (`run_writer`, when given, failed), it records nothing more: the page already says
    the run is no longer saved, and a warning about these tables would take that one's place."""

    def __init__(
        self,
        folder: Path,
        data: ClaimData,
        total_steps: int,
        on_failed: Callable[[RunWarning], None] = lambda warning: None,
        run_writer: RunWriter | None = None,
    ) -> None:
        self.folder, self.on_failed, self.run_writer = folder, on_failed, run_writer
        self.fit, self.score = probing_claims(data)
        self.pending = recorded_steps(total_steps)
        self.tables: list[ProbeTable] = []
        self.latest: Weights | None = None
        self.model: ClaimsTransformer | None = None
        self.failed: str | None = None  # why the tables stopped (engine.runs.ending.error_code)
        self.seconds = 0.0

    def hear(self, event: Event) -> None:
        if self.failed or (self.run_writer is not None and self.run_writer.failed):
            return
        match event:
            case Weights():
                self.latest = event
                if self.pending and event.step >= self.pending[0]:
                    self._record(event)
            case Status(status=status) if status in ENDED_STATUSES:
                if self.latest is not None and (not self.tables or self.tables[-1].step != self.latest.step):
                    self._record(self.latest)

    def _record(self, weights: Weights) -> None:
        started = time.perf_counter()
        self.pending = [step for step in self.pending if step > weights.step]
        try:
            table = probe_table(self._model(weights), self.fit, self.score, weights.step)
            seconds = time.perf_counter() - started
            self.seconds += seconds
            self.tables.append(replace(table, seconds=seconds))
            save_probes(self.folder, self.tables)
        except Exception as error:  # these tables are extra: whatever goes wrong here, the run trains on
            self._fail(error)

    def _fail(self, error: Exception) -> None:
        self.failed = error_code(error)
        logging.getLogger("headwatch").warning(
            "probe tables stopped being written: %s", why(self.failed), exc_info=error
        )
        self.on_failed(RunWarning("probes", self.failed))

    def _model(self, weights: Weights) -> ClaimsTransformer:
        """The probed copy of the model, with these weights; built once, without touching the random numbers the
        run draws from."""
        if self.model is None:
            with torch.random.fork_rng(devices=[]):
                self.model = ClaimsTransformer(ModelConfig.from_dict(weights.model_config))
        self.model.load_state_dict(dict(weights.tensors))
        return self.model
