"""Live views: redraw part of a page from the engine's snapshots, about every second while anything trains."""

from __future__ import annotations

import logging
from collections.abc import Callable

import streamlit as st

from dashboard.engine_resource import get_engine
from engine.telemetry import ACTIVE_STATUSES

ACTIVE_EVERY_S = 1.0
# Idle pages still poll, so a viewer notices a run that someone else started.
IDLE_EVERY_S = 3.0
DRAW_FAILED = "This view could not be drawn this time; it tries again in a moment. Details are in the server log."
log = logging.getLogger(__name__)


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
        try:
            render()
        except Exception:  # a plain sentence in the page, the traceback in the log (st.rerun is not an Exception)
            log.exception("live view failed")
            st.error(DRAW_FAILED)

    tick()
