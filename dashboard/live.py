"""Live views: redraw part of a page from the engine's snapshots, about every second while anything trains."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TypeVar, cast

import plotly.graph_objects as go
import streamlit as st

from dashboard.engine_resource import get_engine
from engine.cache import Cache
from engine.telemetry import ACTIVE_STATUSES

ACTIVE_EVERY_S = 1.0
# Idle pages still poll, so a viewer notices a run that someone else started.
IDLE_EVERY_S = 3.0
DRAW_FAILED = "This view could not be drawn this time; it tries again in a moment. Details are in the server log."
log = logging.getLogger(__name__)
T = TypeVar("T")
# One value per view (its key being the data it was built from, as a version: older ones are never wanted again)
_BUILT: Cache[object] = Cache("live views", max_entries=64, key=("view",))
_render_log_lock = threading.Lock()


def engine_state() -> tuple:
    """What the parts outside a live fragment (buttons, selectors) depend on."""
    engine = get_engine()
    main, race = engine.snapshot(), engine.race_snapshot()
    return main.run_id, main.status, race.run_id, race.status


def live(render: Callable[[], None]) -> None:
    """Call `render` now and then on a timer, inside a fragment.

    `run_every` is fixed when the fragment is declared, and buttons outside the fragment show the state of the last
    full run; so whenever the engine's state changes (a run starts, pauses or ends, here or in another browser)
    the whole page reruns.
    """
    shown = engine_state()
    active = any(status in ACTIVE_STATUSES for status in shown[1::2])

    @st.fragment(run_every=ACTIVE_EVERY_S if active else IDLE_EVERY_S)
    def tick() -> None:
        if engine_state() != shown:
            st.rerun()
        started = time.perf_counter()
        try:
            render()
        except Exception:  # a plain sentence in the page, the traceback in the log (st.rerun is not an Exception)
            log.exception("live view failed")
            st.error(DRAW_FAILED)
        note_render_time(render.__name__, time.perf_counter() - started)

    tick()


def note_render_time(view: str, seconds: float) -> None:
    """With HEADWATCH_RENDER_LOG set to a file, append "<view> <milliseconds>" per live redraw (bench.soak reads it
    to measure how long a live view takes while a run trains)."""
    path = os.environ.get("HEADWATCH_RENDER_LOG")
    if path:
        with _render_log_lock, open(path, "a", encoding="utf-8") as file:
            file.write(f"{view} {seconds * 1000:.2f}\n")


def shared(name: str, key: object, build: Callable[[], T], max_age_s: float) -> T:
    """What `build` last returned under `name`, if that was for an equal `key` less than `max_age_s` ago; otherwise
    a new value, kept for the next caller.

    Every viewer's live view redraws the same charts every second, and building a plotly figure is pure Python: it
    holds the GIL that the training thread needs between its torch calls. Built once per change of `key`, and at most
    once per `max_age_s` for a chart that changes every step, a chart costs the same for one viewer or many. The age
    limit also bounds how long two runs that look alike in `key` (unsaved runs have no id) could share a chart.
    The value is shared by every session's thread: it must never be modified (Streamlit only reads a figure).
    """
    # Made outside the cache's lock: two viewers may build the same value at once, which is harmless.
    return cast(T, _BUILT.get(build, version=key, max_age_s=max_age_s, view=name))


class DrawnFigure(go.Figure):
    """A finished figure that many sessions draw. Streamlit turns a figure into a dict on every draw (a deep copy,
    and every array through plotly's validators into base64): half of a live view's Python time. This one makes the
    dict once and hands out that one: nobody may change it (Streamlit and plotly only read it)."""

    def __init__(self, figure: go.Figure) -> None:
        super().__init__()  # empty: the figure was validated when it was built
        self._drawn = figure.to_dict()

    def to_dict(self) -> dict:
        return self._drawn


def shared_figure(name: str, key: object, build: Callable[[], go.Figure], max_age_s: float) -> DrawnFigure:
    """`shared`, for a figure every viewer draws."""
    return shared(name, key, lambda: DrawnFigure(build()), max_age_s)
