"""Which run a viewer is looking at: the live one, or a saved run reopened read-only.

The choice is per browser session (`st.session_state["replay_run"]`), so one viewer can study an old run while
everyone else watches the live one; every page honours it (Train's and Adam's buttons still act on the live run).
It is also in the page's address (`?run=<id>`), so a reload keeps it and a link shows someone else the same run.
"""

from __future__ import annotations

import streamlit as st

from dashboard.engine_resource import get_engine
from dashboard.measurement import Measurement, latest_measurement, measurement_from_report
from dashboard.untrusted import markdown_text
from engine.reports.reference_studies import References, read_references
from engine.runs.layout import METRICS, is_watched
from engine.runs.listing import RunError, resolve_run
from engine.telemetry import Snapshot

REPLAY_KEY = "replay_run"
RUN_PARAM = "run"  # the page address's ?run=<id>


def replay_id() -> str | None:
    """The saved run this viewer looks at; a new session (a reload, a shared link) takes it from the address."""
    if REPLAY_KEY not in st.session_state and (linked := st.query_params.get(RUN_PARAM)):
        st.session_state[REPLAY_KEY] = linked
    return st.session_state.get(REPLAY_KEY)


def open_run(run_id: str) -> None:
    st.session_state[REPLAY_KEY] = run_id
    st.query_params[RUN_PARAM] = run_id


def back_to_live() -> None:
    st.session_state.pop(REPLAY_KEY, None)
    st.query_params.pop(RUN_PARAM, None)


def keep_in_address() -> None:
    """Put the viewed run back in the address on every page (Streamlit clears it when the page changes)."""
    run_id = replay_id()
    if run_id and st.query_params.get(RUN_PARAM) != run_id:
        st.query_params[RUN_PARAM] = run_id


# Shared by every viewer; a Snapshot is immutable. `version` changes whenever the run's files grow, so a run that
# is still being written is never shown stale.
@st.cache_resource(max_entries=4, show_spinner=False)
def _replay(runs_dir: str, run_id: str, version: tuple) -> Snapshot:
    return get_engine().replay(run_id)


def saved_snapshot(run_id: str) -> Snapshot:
    """A saved run, read-only; RunError if it cannot be opened."""
    engine = get_engine()
    folder = resolve_run(engine.runs_dir, run_id)
    try:
        stat = (folder / METRICS).stat()
        version: tuple = (stat.st_mtime_ns, stat.st_size)
    except OSError:
        version = ()
    return _replay(str(engine.runs_dir), run_id, version)


def banner() -> str | None:
    """Say so when this viewer looks at a saved run, with a way back to the live one."""
    run_id = replay_id()
    if run_id:
        text, button = st.columns([4, 1], vertical_alignment="center")
        text.info(
            f"Viewing saved run **{markdown_text(run_id)}** (read-only). This page's address opens it again, "
            "for you or anyone you send it to."
        )
        button.button("Back to the live run", key="back_to_live", on_click=back_to_live, width="stretch")
    return run_id


def watched_run() -> bool:
    """Whether the viewed run is a saved one of someone's own model, recorded by engine.watch (False when it cannot
    be opened: the page says why)."""
    run_id = replay_id()
    try:
        return run_id is not None and is_watched(saved_snapshot(run_id).config)
    except RunError:
        return False


def claims_only(page: str) -> None:
    """Stop a page that reads claims when the viewed run is someone's own model (engine.recording.watch), saying where
    its measurements are instead."""
    if watched_run():
        run_id = replay_id()
        st.info(
            f"**{markdown_text(run_id)}** is your own model, recorded by headwatch.watch. {page} reads insurance "
            "claims, which only Headwatch's claims model does: this run's loss is on **Train**, each attention "
            "head's optimizer statistics on **Adam's memories**, and its attention on **Attention**."
        )
        st.stop()


def snapshot() -> Snapshot | None:
    """The viewed run; None (after saying why) when a saved run cannot be opened."""
    run_id = replay_id()
    if run_id is None:
        return get_engine().snapshot()
    try:
        return saved_snapshot(run_id)
    except RunError as error:
        st.error(markdown_text(f"Saved run {run_id} cannot be opened: {error}"))
        return None


@st.cache_data(max_entries=16, show_spinner="Switching each head off in turn, on 2,000 held-out claims…")
def _analysis(runs_dir: str, run_id: str, step: int) -> dict:
    return get_engine().analyze(run_id)


def measurement(snap: Snapshot) -> Measurement | None:
    """The definitive measurement of a run that has stopped (`engine analyze` on its saved weights), else the latest
    one taken while training."""
    if not snap.active and snap.run_id and snap.run_dir:
        try:
            return measurement_from_report(_analysis(str(get_engine().runs_dir), snap.run_id, snap.step))
        except RunError:
            pass  # e.g. stopped before its first checkpoint: the training-time measurement is all there is
    return latest_measurement(snap)


# Shipped with Headwatch: they change only when it is updated, so every viewer shares one reading a minute
@st.cache_resource(ttl=60, show_spinner=False)
def references() -> References:
    """The reference studies shipped with Headwatch (engine.reports.reference_studies), read as run files are."""
    return read_references()
