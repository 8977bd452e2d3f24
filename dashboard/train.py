"""Train: choose the settings, press Train, watch the loss fall and the accuracy rise."""

from dataclasses import replace

import streamlit as st

from dashboard import figures, summaries
from dashboard.engine_resource import get_engine
from dashboard.live import live
from engine.core import ConfigError, EngineBusy
from engine.presets import PRESETS, preset
from engine.trainer import LIMITS, OPTIMIZERS

FIELDS = ("optimizer", "lr", "batch_size", "seed", "steps")
STATUS_BOX = {"failed": st.error, "diverged": st.error, "finished": st.success, "stopped": st.warning}


def apply_preset() -> None:
    chosen = PRESETS[st.session_state.preset]
    for name in FIELDS:
        st.session_state[f"cfg_{name}"] = getattr(chosen, name)


def start() -> None:
    config = replace(preset(st.session_state.preset), **{n: st.session_state[f"cfg_{n}"] for n in FIELDS})
    try:
        get_engine().start(config)
    except (ConfigError, EngineBusy) as error:
        st.session_state.train_error = str(error)


def live_view() -> None:
    snap = get_engine().snapshot()
    STATUS_BOX.get(snap.status, st.info)(summaries.status_text(snap))
    if snap.status == "idle":
        return
    st.progress(min(snap.step / max(snap.total_steps, 1), 1.0), text=summaries.progress_text(snap))
    st.caption(f"This run: {summaries.config_text(snap.config)}")
    loss, accuracy = st.columns(2)
    loss.plotly_chart(figures.loss_figure(snap), key="loss_chart", config=figures.CHART_CONFIG)
    accuracy.plotly_chart(figures.accuracy_figure(snap), key="accuracy_chart", config=figures.CHART_CONFIG)


engine = get_engine()
snap = engine.snapshot()
st.session_state.setdefault("preset", "default")
for field in FIELDS:
    st.session_state.setdefault(f"cfg_{field}", getattr(PRESETS["default"], field))

st.title("Train the claims auditor")
st.caption("A small transformer reads insurance claims and learns to answer VALID, or INVALID with a reason "
           "(MEDICAL, DOSAGE, COST or ADMIN). Everyone who opens this page watches the same run.")
settings, view = st.columns([1, 3], gap="large")
with settings:
    st.selectbox("Recipe", list(PRESETS), key="preset", on_change=apply_preset, persist_state="session",
                 help="Fills in the settings below. 'quick' is a tiny model that trains in seconds.")
    with st.form("settings", border=False):
        st.radio("Optimizer", OPTIMIZERS, format_func=figures.OPTIMIZER_NAMES.get, key="cfg_optimizer",
                 horizontal=True, persist_state="session")
        st.number_input("Learning rate", min_value=1e-5, max_value=LIMITS["lr"][1], step=1e-3, format="%.5f",
                        key="cfg_lr", persist_state="session", help="How big a step each update takes.")
        st.number_input("Batch size", *LIMITS["batch_size"][:2], key="cfg_batch_size", persist_state="session",
                        help="Claims the model reads before each update.")
        st.number_input("Steps", *LIMITS["steps"][:2], step=100, key="cfg_steps", persist_state="session")
        st.number_input("Seed", *LIMITS["seed"][:2], key="cfg_seed", persist_state="session",
                        help="Same seed, same claims, same starting weights: the run can be repeated.")
        st.form_submit_button("Train", type="primary", on_click=start, disabled=snap.active, key="train",
                              width="stretch")
    if error := st.session_state.pop("train_error", None):
        st.error(error)
with view:
    pause_or_resume, stop, reset, _ = st.columns([1, 1, 1, 3])
    if snap.status == "paused":
        pause_or_resume.button("Resume", key="resume", on_click=engine.resume, width="stretch")
    else:
        pause_or_resume.button("Pause", key="pause", on_click=engine.pause, disabled=snap.status != "running",
                               width="stretch")
    stop.button("Stop", key="stop", on_click=engine.stop, disabled=not snap.active, width="stretch")
    reset.button("Reset", key="reset", on_click=engine.reset, disabled=snap.active or snap.status == "idle",
                 width="stretch", help="Clear the finished run's charts.")
    live(live_view)
