"""The observers every recorded run has: the live hub that pages read, and the run's folder on disk."""

from __future__ import annotations

from collections.abc import Callable

from engine.recording.events import Event, RunStart, RunWarning, Status, Weights
from engine.runs.words import status_text, warning_text
from engine.runs.writer import RunWriter
from engine.telemetry import (
    AttentionPoint,
    EvalPoint,
    MetricsPoint,
    OptimPoint,
    SpecializationPoint,
    StepPoint,
    TelemetryHub,
)


class HubObserver:
    """Publishes a run's events to the pages; silent once `current()` says the run was reset or replaced (its thread
    may still be finishing, and must not write into the next run's view)."""

    def __init__(self, hub: TelemetryHub, current: Callable[[], bool] = lambda: True) -> None:
        self.hub, self.current = hub, current

    def hear(self, event: Event) -> None:
        if not self.current():
            return
        hub = self.hub
        match event:
            case RunStart():
                hub.describe(
                    event.probe,
                    event.attention_names,
                    event.n_heads,
                    event.prepare_seconds,
                    event.chance,
                    event.commonest,
                )
            case StepPoint():
                hub.record_step(event.step, event.loss, event.seconds, event.steps_per_second, event.seconds_left)
            case EvalPoint():
                hub.record_eval(event)
            case OptimPoint():
                hub.record_optim(event)
            case AttentionPoint():
                hub.record_attention(event)
            case SpecializationPoint():
                hub.record_specialization(event)
            case RunWarning():
                hub.set_warning(warning_text(event.files, event.error))
            case Status():
                hub.set_status(event.status, status_text(event.status, event.step, event.seconds, event.ending))
                if event.setup_seconds is not None:
                    hub.record_setup(event.setup_seconds)


class WriterObserver:
    """Saves a run's events into its folder; `on_failed` hears, once, that the folder stopped being written."""

    def __init__(self, writer: RunWriter, on_failed: Callable[[RunWarning], None] = lambda warning: None) -> None:
        self.writer, self.on_failed = writer, on_failed
        self._told = False

    def hear(self, event: Event) -> None:
        writer = self.writer
        match event:
            case RunStart():
                writer.chance, writer.commonest = event.chance, event.commonest
            case StepPoint() | EvalPoint() | OptimPoint() | SpecializationPoint() | MetricsPoint():
                writer.record(event)
            case AttentionPoint():
                writer.save_attention(event)
            case Weights(keep=True):
                writer.checkpoint(dict(event.tensors), event.step, event.model_config)
            case Status():
                writer.status(event.status, event.step, event.seconds, event.ending)
        if writer.failed and not self._told:
            self._told = True
            self.on_failed(RunWarning("run", writer.failed))
