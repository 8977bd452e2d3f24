"""Helpers shared by the engine tests."""

import time
from collections.abc import Callable

from engine.model import REASONS
from engine.probes import FIELDS, ProbeTable


class Heard:
    """An observer keeping every event of one kind that a run or a watcher emits, as it emits it."""

    def __init__(self, kind: type) -> None:
        self.kind = kind
        self.events: list = []

    def hear(self, event: object) -> None:
        if isinstance(event, self.kind):
            self.events.append(event)


def wait_for(condition: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def probe_table_with(encoder: dict[str, dict[str, float]], step: int = 100) -> ProbeTable:
    """Every cell 0.6 on both sources, but for the encoder's cells given."""
    def cells(given: dict[str, dict[str, float]]) -> dict:
        return {reason: {field: given.get(reason, {}).get(field, 0.6) for field in FIELDS} for reason in REASONS}

    return ProbeTable(step, {"encoder": cells(encoder), "embeddings": cells({})},
                      {reason: dict.fromkeys(FIELDS, 300) for reason in REASONS}, seconds=0.5)
