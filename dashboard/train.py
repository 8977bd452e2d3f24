"""Train: choose the settings, press Train, watch the loss fall and the accuracy rise."""

from dataclasses import replace

import streamlit as st

from dashboard import figures, summaries, viewing
from dashboard.engine_resource import get_engine
from dashboard.live import live, shared_figure
from dashboard.untrusted import markdown_text
from engine.core import ConfigError, EngineBusy, RunsFolderError
from engine.runs.layout import is_watched
from engine.training.config import LIMITS, OPTIMIZERS
from engine.training.presets import PRESETS, preset, recipes_told

FIELDS = ("optimizer", "lr", "batch_size", "seed", "steps")
LR_MIN = 1e-5  # the engine takes any rate above 0; the form shows five decimals, so this is the smallest it can show
SAVED_RUN_CONTROLS = (
    "You are viewing a saved run, which nothing can change. Train starts a new live run and takes "
    "you to it; Pause, Stop and Reset act on the live run, so they wait until you go back to it."
)
STATUS_BOX = {"failed": st.error, "diverged": st.error, "finished": st.success, "stopped": st.warning}


def allowed(low: float, high: float) -> str:
    """The range, said up front: the browser refuses a number outside it (and names the range then too)."""

    def plain(value: float) -> str:
        return f"{value:,}" if isinstance(value, int) else f"{value:.5f}".rstrip("0").rstrip(".")

    return f"Allowed: {plain(low)} to {plain(high)}."


def apply_preset() -> None:
    chosen = PRESETS[st.session_state.preset]
    for name in FIELDS:
        st.session_state[f"cfg_{name}"] = getattr(chosen, name)


def start(save: bool = True) -> None:
    config = replace(preset(st.session_state.preset), **{n: st.session_state[f"cfg_{n}"] for n in FIELDS})
    if st.session_state.get("faster"):
        config.threads = 0
    config.tensorboard = bool(st.session_state.get("tensorboard"))
    try:
        get_engine().start(config, save=save)
    except RunsFolderError as error:
        # kept (not popped) until a run starts: the offer to train without saving must outlive the next rerun
        st.session_state.runs_folder_error = str(error)
    except (ConfigError, EngineBusy) as error:
        st.session_state.train_error = str(error)
    else:
        st.session_state.pop("runs_folder_error", None)
        viewing.back_to_live()  # whoever presses Train wants to watch it


def reset_if_idle() -> None:
    """Reset is only offered once nothing trains, but a page drawn before someone else pressed Train still shows it
    enabled: the engine refuses rather than throw their run away."""
    try:
        get_engine().reset(only_if_idle=True)
    except EngineBusy as error:
        st.session_state.train_error = str(error)


def live_view() -> None:
    snap = viewing.snapshot()
    if snap is None:
        return
    box = st.warning if snap.no_better_than_chance else STATUS_BOX.get(snap.status, st.info)
    box(markdown_text(summaries.status_text(snap)))
    if snap.warning:
        st.warning(snap.warning)
    if snap.status == "idle":
        return
    if is_watched(snap.config):  # its loop never said how many steps it takes: no bar to fill
        st.markdown(summaries.progress_text(snap))
    else:
        st.progress(min(snap.step / max(snap.total_steps, 1), 1.0), text=summaries.progress_text(snap))
    st.caption(f"This run: {markdown_text(summaries.config_text(snap.config))}")
    # built once for every viewer (see `shared`): the loss changes every step, so one loss chart serves every viewer
    # for half a second; the accuracy chart changes only with a new evaluation
    log = st.session_state.get("loss_log", False)
    loss_chart = shared_figure(
        f"train.loss.{log}", (snap.run_id, snap.status), lambda: figures.loss_figure(snap, log), max_age_s=0.5
    )
    last_eval = snap.latest_eval.step if snap.latest_eval else None
    if snap.metrics:  # a watched model's own numbers take the place of held-out claims it never saw
        accuracy_chart = shared_figure(
            "train.metrics",
            (snap.run_id, snap.status, len(snap.metrics)),
            lambda: figures.metrics_figure(snap),
            max_age_s=5.0,
        )
    else:
        accuracy_chart = shared_figure(
            "train.accuracy",
            (snap.run_id, snap.status, len(snap.evals), last_eval),
            lambda: figures.accuracy_figure(snap),
            max_age_s=5.0,
        )
    loss, accuracy = st.columns(2)
    loss.plotly_chart(loss_chart, key="loss_chart", config=figures.CHART_CONFIG)
    loss.toggle("Loss on a log scale", key="loss_log", persist_state="session", help=figures.LOG_HELP)
    accuracy.plotly_chart(accuracy_chart, key="accuracy_chart", config=figures.CHART_CONFIG)


engine = get_engine()
snap = engine.snapshot()
st.session_state.setdefault("preset", "default")
for field in FIELDS:
    st.session_state.setdefault(f"cfg_{field}", getattr(PRESETS["default"], field))

if viewing.watched_run():  # someone's own model: trained in their loop, not here, and not on claims
    st.title("Your model's training")
    viewing.banner()
    st.caption(
        "Recorded by headwatch.watch from your own training loop: its loss at every step, and the numbers your "
        "loop reported. It trains in your loop, so there are no settings or buttons here."
    )
    live(live_view)
    st.stop()
st.title("Train the claims auditor")
viewing.banner()
st.caption(
    "A small transformer reads insurance claims and learns to answer VALID, or INVALID with a reason "
    "(MEDICAL, DOSAGE, COST or ADMIN). Everyone who opens this page watches the same run."
)
settings, view = st.columns([1, 3], gap="large")
with settings:
    st.selectbox(
        "Recipe",
        list(PRESETS),
        key="preset",
        on_change=apply_preset,
        persist_state="session",
        help=f"Fills in the settings below. {recipes_told()}",
    )
    with st.form("settings", border=False):
        st.radio(
            "Optimizer",
            OPTIMIZERS,
            format_func=figures.OPTIMIZER_NAMES.get,
            key="cfg_optimizer",
            horizontal=True,
            persist_state="session",
        )
        st.number_input(
            "Learning rate",
            LR_MIN,
            LIMITS["lr"][1],
            step=1e-3,
            format="%.5f",
            key="cfg_lr",
            persist_state="session",
            help=f"How big a step each update takes. {allowed(LR_MIN, LIMITS['lr'][1])}",
        )
        st.number_input(
            "Batch size",
            *LIMITS["batch_size"][:2],
            key="cfg_batch_size",
            persist_state="session",
            help=f"Claims the model reads before each update. {allowed(*LIMITS['batch_size'][:2])}",
        )
        st.number_input(
            "Steps",
            *LIMITS["steps"][:2],
            step=100,
            key="cfg_steps",
            persist_state="session",
            help=allowed(*LIMITS["steps"][:2]),
        )
        st.number_input(
            "Seed",
            *LIMITS["seed"][:2],
            key="cfg_seed",
            persist_state="session",
            help="Picks the starting weights and the order the claims are drawn in: the same seed "
            "repeats the run exactly on this machine (another processor may round sums otherwise). "
            "Every run learns from the same generated claims and is tested on the same held-out "
            "ones, so runs compare fairly. " + allowed(*LIMITS["seed"][:2]),
        )
        st.checkbox(
            "Faster, not repeatable",
            key="faster",
            persist_state="session",
            help="Lets training switch between one and two processor threads, whichever is faster at the "
            "moment: about 1.4x faster on an otherwise idle machine, but sums split across threads "
            "round differently, so the same seed no longer repeats the run exactly.",
        )
        st.checkbox(
            "Also write TensorBoard files",
            key="tensorboard",
            persist_state="session",
            help="Writes the run for TensorBoard too, in the tensorboard folder inside the run's folder: the "
            "loss, the accuracies, each head's optimizer statistics and its attention as images. Open "
            "them with `tensorboard --logdir runs/`.",
        )
        st.form_submit_button(
            "Train", type="primary", on_click=start, disabled=snap.active, key="train", width="stretch"
        )
    if error := st.session_state.pop("train_error", None):
        st.error(error)
    if problem := st.session_state.get("runs_folder_error"):
        st.error(problem)
        st.button(
            "Train without saving",
            key="train_unsaved",
            on_click=start,
            kwargs={"save": False},
            disabled=snap.active,
            width="stretch",
            help="Trains with the settings above; nothing is written to disk, so the run cannot be reopened.",
        )
with view:
    pause_or_resume, stop_column, reset_column, _ = st.columns([1, 1, 1, 3])
    saved = viewing.replay_id() is not None  # the buttons act on the live run, which this viewer does not see now
    if snap.status == "paused":
        pause_or_resume.button("Resume", key="resume", on_click=engine.resume, disabled=saved, width="stretch")
    else:
        pause_or_resume.button(
            "Pause", key="pause", on_click=engine.pause, disabled=saved or snap.status != "running", width="stretch"
        )
    stop_column.button("Stop", key="stop", on_click=engine.stop, disabled=saved or not snap.active, width="stretch")
    reset_column.button(
        "Reset",
        key="reset",
        on_click=reset_if_idle,
        disabled=saved or snap.active or snap.status == "idle",
        width="stretch",
        help="Clear the finished run's charts.",
    )
    if saved:
        st.caption(SAVED_RUN_CONTROLS)
    live(live_view)
