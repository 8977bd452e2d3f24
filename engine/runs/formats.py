"""The one place that knows run folders saved by older versions of Headwatch: what they hold that this version
writes differently is read here as this version's settings and facts, and a format this version does not read is
refused in words.

config.json names its folder's format (engine.runs.layout.FORMAT_KEY). Format 1 is this version's before it named
one: its status.json said how the run ended in a sentence (`message`), shown as it was saved, and its config.json
may lack settings added since, filled in here with what those runs were trained with; the older of them name each
head only by a label ("leans COST"), read here as its kind. Format 2 records how a run ended as facts
(engine.runs.ending); its heads carry a label and a sentence of evidence beside their kind, which are not read (this
version words heads from their facts, engine.interpret.labels). Format 3 saves no words at all."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from data.rules import REASONS
from engine.runs.checks import RunError, text
from engine.runs.ending import Ending, read_ending
from engine.runs.layout import CONFIG, FORMAT, FORMAT_KEY, is_watched
from engine.telemetry import ACTIVE_STATUSES

OLDEST_FORMAT = 1
# what runs saved before a model setting existed were trained with
# "DOSAGE with head 2", "ADMIN (sex, age) with heads 1 and 3" in a saved label "shares ... with ..., ... with ..."
SHARED = re.compile(r"(MEDICAL|DOSAGE|COST|ADMIN(?: \([a-z, ]+\))?) with heads? (\d+(?:(?:, | and )\d+)*)")
SETTINGS_BEFORE_THEY_EXISTED = {"cross_keys": "encoder", "cross_qk_init": 0.02, "encoder_qk_init": 0.02,
                                "null_key": False, "positions": True}


class OtherFormat(RunError):
    """A run folder saved in a format this version does not read: not damaged, but not for this version."""


def config_as_now(config: dict) -> dict:
    """config.json's settings as this version writes them (its format left out: it is the folder's, not a
    setting); OtherFormat for a format this version does not read."""
    found = config.get(FORMAT_KEY, OLDEST_FORMAT)
    if isinstance(found, bool) or not isinstance(found, int):
        raise RunError(f"{CONFIG} is damaged: its format is not a whole number")
    if not OLDEST_FORMAT <= found <= FORMAT:
        newer = "a newer" if found > FORMAT else "an older"
        raise OtherFormat(f"this run was saved by {newer} Headwatch, in format {found}; this version reads formats "
                          f"{OLDEST_FORMAT} to {FORMAT}")
    settings = {key: value for key, value in config.items() if key != FORMAT_KEY}
    return settings if found > 1 or is_watched(settings) else _settings_before_formats(settings)


def _settings_before_formats(config: dict) -> dict:
    """A format-1 run's settings, with those added since it was saved as they were then: cross-attention keyed on
    the encoder, no "nothing" slot, ... (SETTINGS_BEFORE_THEY_EXISTED), and claims drawn from the run's seed."""
    settings = dict(config)
    if "data_seed" not in settings and "seed" in settings:
        settings["data_seed"] = settings["seed"]
    model = settings.get("model", {})
    if isinstance(model, dict):  # anything else is refused by the checks of every setting
        settings["model"] = {**SETTINGS_BEFORE_THEY_EXISTED, **model}
    return settings


def ending_of(status: Mapping[str, Any]) -> Ending | None:
    """How a run ended, as its status.json says; None while it trains. Format 2 says it in facts (`ended_by` and
    its numbers); format 1 in a sentence, kept as it was said. ValueError for what no run writes."""
    state = status.get("status", "stopped")
    if state in ACTIVE_STATUSES:
        return None
    if "ended_by" in status:
        return read_ending(status)
    return Ending(state, said=text(status.get("message", "")))


def role_from_label(label: str) -> dict[str, Any]:
    """The kind, the reason it names and the heads it shares with, read from the label of a head saved before these
    were ("DOSAGE specialist", "leans COST", "helps ADMIN (age)", "shares DOSAGE with head 2, COST with heads 2 and
    4", "needed by DOSAGE and valid claims", "generalist")."""
    if label.endswith(" specialist"):
        return _role("specialist", _unit(label.removesuffix(" specialist")))
    for kind in ("leans", "helps"):
        if label.startswith(f"{kind} "):
            return _role(kind, _unit(label.removeprefix(f"{kind} ")))
    if label.startswith("shares "):
        shared = {_unit(unit): tuple(int(j) - 1 for j in re.findall(r"\d+", heads))
                  for unit, heads in SHARED.findall(label.removeprefix("shares "))}
        return _role("shares", next(iter(shared), None), shared)
    if label.startswith("needed by "):
        named = label.removeprefix("needed by ")
        classes = REASONS if named == "every reason" else re.split(r", | and ", named)
        return _role("needed by", ", ".join("VALID" if c == "valid claims" else c for c in classes))
    return _role(label, None)


def _role(kind: str, reason: str | None, shared_with: dict[str, tuple[int, ...]] | None = None) -> dict[str, Any]:
    return {"kind": kind, "reason": reason, "shared_with": shared_with or {}}


def _unit(named: str) -> str:
    """'ADMIN (sex, age)' -> 'sex, age' (as later runs record ADMIN's checks); 'COST' -> 'COST'."""
    return named.removeprefix("ADMIN (").removesuffix(")") if named.startswith("ADMIN (") else named
