"""Headwatch's logger, for what `watch` and its callbacks say while someone else's model trains: the attention modules
found, and what was stopped and why (training itself goes on)."""

from __future__ import annotations

import logging


def described(error: Exception) -> str:
    """An error from someone else's code (a weights function, the model), for a developer reading the log."""
    return f"{type(error).__name__}: {error}"


def headwatch_logger() -> logging.Logger:
    """Headwatch's logger. Where the program configured no logging, it says its lines on stderr itself (as
    transformers does): what watch found, and what it stopped, is worth seeing."""
    log = logging.getLogger("headwatch")
    if not log.hasHandlers():
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("headwatch: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    return log


def warn(message: str) -> None:
    headwatch_logger().warning(message)
