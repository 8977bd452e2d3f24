"""A run's status and the warnings about its files, in words: composed here, and only here, from the facts the
engine records (engine.runs.ending), for the pages, the command line's summary, the live hub and a watched loop's log.

It lives in engine.runs because that is the lowest layer every one of them may import: the replay of a saved run
(engine.runs.replay), the observer that tells the live hub (engine.recording), the trainer, the Engine and the
command line above them, and the pages (dashboard/, which imports the engine but never the reverse). It imports no
Streamlit, so the engine can say what it reports without knowing the pages."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Mapping

from engine.runs.ending import FILES, UNEXPECTED, UNWRITABLE, Ending
from engine.runs.layout import STATUS
from engine.telemetry import at_most_chance

# a saved run that is not ended, or whose end is unknown, as its replay says it
STATUS_DAMAGED = f"{STATUS} is damaged, so how this run ended is unknown; shown up to its last save."
WATCHED_TRAINING = "Training elsewhere (headwatch.watch): shown up to its last save, and following it as it grows."
SERVER_STOPPED = "The server stopped while this run was training; shown up to its last save."
TRAINING_HERE = "This run is training now: shown up to its last save."


def why(error: str) -> str:
    """Why files stopped being written (engine.runs.ending.error_code): the system's own words for its error code."""
    if error == UNEXPECTED:
        return "an unexpected error (its details are in the log of the process that trained it)"
    if error == UNWRITABLE:
        return "the files could not be written"
    code = getattr(errno, error, None)
    return os.strerror(code) if isinstance(code, int) else error


def unsaved_text(files: str, error: str) -> str:
    """Which files stopped being written, and why."""
    named = {"folder": "the run folder could not be written: ", "run": "", "tensorboard": "TensorBoard files: ",
             "probes": "where its verdicts form: "}
    return named[files] + why(error)


def warning_text(files: str, error: str) -> str:
    """What the run's viewers are told while it trains on without some of its files."""
    if files == "folder":
        return f"This run is not being saved ({unsaved_text(files, error)}); it trains on anyway."
    lost = {"run": "this run is no longer saved", "tensorboard": "its TensorBoard files are no longer written",
            "probes": "where its verdicts form is no longer saved"}[files]
    return f"Training goes on, but {lost}: {why(error)}"


def status_text(status: str, step: int, seconds: float, ending: Ending | None = None) -> str:
    """The live run's status in a sentence (the pages say more while it trains: dashboard.summaries)."""
    if ending is not None:
        return ended_text(ending, step, seconds)
    return {"running": "Training", "paused": f"Paused at step {step}"}.get(status, "")


def ended_text(ending: Ending, step: int, seconds: float) -> str:
    """How a run ended, with its numbers, and which of its files stopped being saved partway."""
    if ending.said is not None:
        return ending.said
    said = _ENDINGS[ending.by](ending, step, seconds)
    if not ending.unsaved:
        return said
    parts = "; ".join(unsaved_text(files, ending.unsaved[files]) for files in FILES if files in ending.unsaved)
    return f"{said.rstrip('.')}. Its files stopped being saved partway ({parts})"


def _finished(ending: Ending, step: int, seconds: float) -> str:
    """Its final accuracy, and plainly when that is no better than chance (a watched loop's has none)."""
    if ending.accuracy is None:
        return f"Finished {step:,} steps"
    done = f"Finished {step:,} steps in {seconds:.0f} s with {ending.accuracy:.1%} of held-out claims right"
    if ending.chance is None or ending.commonest is None or not at_most_chance(ending.accuracy, ending.chance):
        return done + "."
    return (f"{done}: no better than answering {ending.commonest} to every claim ({ending.chance:.1%}). This run "
            "learned nothing useful: train longer, or try another learning rate.")


def _diverged(ending: Ending, step: int, seconds: float) -> str:
    kept = {"step": f"the weights of step {step} are kept",
            "checkpoint": f"the last good checkpoint (step {ending.kept_step}) is kept",
            "none": "no finite weights were saved before it"}[ending.kept or "none"]
    return f"Diverged at step {step + 1} (loss is {ending.loss}); {kept}. Try a smaller learning rate."


def _failed(ending: Ending, step: int, seconds: float) -> str:
    if ending.failure == "refused":
        return f"Training failed: {ending.problem}"
    if ending.failure == "loop":
        return f"The training loop raised an error at step {step}"
    return ("Training failed because of an unexpected error; its details are in the log of the process that "
            "trained it.")


_ENDINGS: dict[str, Callable[[Ending, int, float], str]] = {
    "finished": _finished,
    "target": lambda ending, step, seconds: f"Reached {ending.accuracy:.1%} held-out accuracy at step {step}",
    "time_limit": lambda ending, step, seconds: f"Time limit of {ending.time_limit:g} s reached at step {step}",
    "stopped": lambda ending, step, seconds: ("Stopped by the user before the first step" if step == 0 else
                                              f"Stopped by the user at step {step}"),
    "diverged": _diverged,
    "failed": _failed,
}


def save_problem(unsaved: Mapping[str, str]) -> str | None:
    """Why the run's own files are incomplete (the command line's summary), or None when they are whole."""
    return next((unsaved_text(files, unsaved[files]) for files in ("folder", "run") if files in unsaved), None)
