"""How a run ended, and which of its files stopped being written, as facts: codes and numbers, never sentences.
The training loop, the trainer and `watch` report them; status.json records them (format 2); engine.runs.words
says them in words for every page and the command line."""

from __future__ import annotations

import errno
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.runs.checks import number, text, whole

# ended_by -> the status of a run that ended so
ENDED_BY = {"finished": "finished", "target": "finished", "time_limit": "finished", "stopped": "stopped",
            "diverged": "diverged", "failed": "failed"}
KEPT = ("step", "checkpoint", "none")  # a diverged run's weights: those of its last step, its last checkpoint's, none
# a failed run: an error in Headwatch's own code (logged), settings or files it refused, or a watched loop's error
FAILURES = ("unexpected", "refused", "loop")
FILES = ("folder", "run", "tensorboard", "probes")  # what stopped being written: the whole folder, its files, ...
# Why files stopped being written: the name of the system's error code (ENOSPC), or one of these
UNWRITABLE, UNEXPECTED = "unwritable", "unexpected"  # a system error without a code; an error that is no file's
ERROR_CODE = re.compile(r"E[A-Z0-9]{1,15}")
LOSSES = ("nan", "inf", "-inf")  # the loss a run diverged on, which JSON has no number for
# the facts each way of ending is said with
NEEDED = {"target": ("accuracy",), "time_limit": ("time_limit",), "diverged": ("loss", "kept"), "failed": ("failure",)}


@dataclass(frozen=True)
class Ending:
    """How a run ended (`by`, one of ENDED_BY) and that way's numbers; the step and seconds are its status's."""

    by: str
    accuracy: float | None = None  # finished, target: held-out accuracy at the last evaluation
    chance: float | None = None  # finished: what answering `commonest` to every claim scores
    commonest: str | None = None
    time_limit: float | None = None  # time_limit: the seconds allowed
    loss: str | None = None  # diverged: LOSSES
    kept: str | None = None  # diverged: KEPT
    kept_step: int | None = None  # diverged: the step of the weights kept
    failure: str | None = None  # failed: FAILURES
    # failed, refused: the refusal in its error's own words (settings, a claims file, a folder: all refused before the
    # run's folder is written, so only the live run says it)
    problem: str | None = None
    unsaved: Mapping[str, str] = field(default_factory=dict)  # FILES -> why they stopped being written
    said: str | None = None  # a run saved in format 1: the sentence it saved instead (engine.runs.formats)


def error_code(error: BaseException) -> str:
    """Why files could not be written, as a code: the system's error name (ENOSPC), or UNWRITABLE, UNEXPECTED."""
    if not isinstance(error, OSError):
        return UNEXPECTED
    return errno.errorcode.get(error.errno or 0, UNWRITABLE)


def ending_record(ending: Ending) -> dict[str, Any]:
    """The facts as status.json keeps them: `ended_by` and the numbers that way of ending has."""
    record: dict[str, Any] = {"ended_by": ending.by}
    for name in ("accuracy", "chance", "commonest", "time_limit", "loss", "kept", "kept_step", "failure", "problem"):
        if getattr(ending, name) is not None:
            record[name] = getattr(ending, name)
    if ending.unsaved:
        record["unsaved"] = dict(ending.unsaved)
    return record


def read_ending(status: Mapping[str, Any]) -> Ending:
    """The facts of a status.json of format 2 that says how its run ended; ValueError for any that a run would not
    write (a hostile or damaged file)."""
    by = status.get("ended_by")
    if not isinstance(by, str) or ENDED_BY.get(by) != status.get("status"):
        raise ValueError("not a way a run ends")
    if not math.isfinite(number(status.get("seconds", 0.0))):  # said with how it ended
        raise ValueError("not the seconds a run trained")
    checks = {"accuracy": _share, "chance": _share, "commonest": text, "time_limit": number,
              "loss": _one_of(LOSSES), "kept": _one_of(KEPT), "kept_step": whole, "failure": _one_of(FAILURES),
              "problem": text, "unsaved": unsaved_files}
    ending = Ending(by, **{name: check(status[name]) for name, check in checks.items() if status.get(name) is not None})
    needed = [*NEEDED.get(by, ()), *(["kept_step"] if ending.kept == "checkpoint" else []),
              *(["problem"] if ending.failure == "refused" else [])]
    if any(getattr(ending, name) is None for name in needed):
        raise ValueError(f"a run that ended so records its {', '.join(needed)}")
    return ending


def unsaved_files(value: Any) -> dict[str, str]:
    """FILES -> why they stopped being written, as a run records them; ValueError for anything else."""
    if not isinstance(value, dict) or not all(files in FILES and _error(why) for files, why in value.items()):
        raise ValueError("not the files a run stopped writing")
    return value


def _error(value: Any) -> bool:
    return value in (UNWRITABLE, UNEXPECTED) or (isinstance(value, str) and ERROR_CODE.fullmatch(value) is not None)


def _share(value: Any) -> float:
    share = number(value)
    if not 0 <= share <= 1:
        raise ValueError("not a share")
    return share


def _one_of(allowed: tuple[str, ...]) -> Any:
    def check(value: Any) -> str:
        if value not in allowed:
            raise ValueError(f"not one of {allowed}")
        return value
    return check
