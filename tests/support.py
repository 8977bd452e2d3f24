"""Helpers shared by the engine tests."""

import time
from collections.abc import Callable


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
