"""Adam's memories: the optimizer's two running averages per attention head, and an SGD-vs-Adam race."""

from functools import partial

import streamlit as st

from dashboard import figures, summaries, viewing
from dashboard.engine_resource import get_engine
from dashboard.live import live, shared_figure
from dashboard.untrusted import markdown_text
from engine.core import ConfigError, EngineBusy, RunsFolderError
from engine.training.config import TrainConfig
from engine.training.presets import preset

STORY_BETA2 = 0.999  # the story's second-memory decay


def explanation(beta2: float) -> str:
    """The story's two memories, then where this run's Adam differs from it (its decay, bias correction)."""
    decay = ""
    if beta2 != STORY_BETA2:
        decay = (
            f"This run's **v** forgets faster than the story's: `v = {beta2:g}·v + {1 - beta2:.3g}·gradient²`, "
            f"a memory of about {1 / (1 - beta2):,.0f} steps instead of 1,000; on this task it reached 95% of "
            "the test claims in fewer steps.\n\n"
        )
    return f"""
The story this app starts from says Adam keeps **two memories** for every weight: **m**, *which direction am I
usually going* (`m = 0.9·m + 0.1·gradient`), and **v**, *how big are my mistakes usually*
(`v = 0.999·v + 0.001·gradient²`), and moves each weight by `learning rate · m / √v`.
Below, each line is one attention head (its query, key, value and output weights), measured while it trains.

{decay}One honest difference: the story's Adam has no *bias correction*. Both memories start at zero, so early on
they read too small, and the story's first steps come out about 3× the learning rate (0.1 / √0.001).
`torch.optim.Adam` divides m by (1 − 0.9ᵗ) and v by (1 − {beta2:g}ᵗ) at step t. The |m| and √v charts show the raw
memories torch keeps; the *effective step* chart shows the bias-corrected step torch really applies.
"""


def start_race(save: bool | None = None) -> None:
    try:
        get_engine().start_race(save=save)
    except RunsFolderError as error:
        # kept until a race starts: the offer to race without saving must outlive the next rerun
        st.session_state.race_folder_error = f"The race cannot be saved. {error}"
    except (ConfigError, EngineBusy) as error:
        st.session_state.race_error = str(error)
    else:
        st.session_state.pop("race_folder_error", None)


def memories() -> None:
    snap = viewing.snapshot()
    if snap is None:
        return
    if not snap.optim:
        st.info(
            "Waiting for the first training step…"
            if snap.active
            else "The charts fill in once a run has taken its first step: press Train on the Train page."
        )
        return
    st.caption(
        markdown_text(
            f"Run: {summaries.config_text(snap.config)}; {summaries.schedule_text(snap.config)}, "
            "which the effective step follows."
        )
    )
    # built once for every viewer (see `shared`), and at most every 2 s: a new point of the optimizer's statistics
    # arrives every half second, and rebuilding these charts for each one would halve the training speed
    # (bench.ui_render measures it)
    key = (snap.run_id, snap.status)
    for metric in figures.MEMORY_METRICS:
        chart = shared_figure(f"adam.{metric}", key, partial(figures.memory_figure, snap, metric), max_age_s=2.0)
        st.plotly_chart(chart, key=f"memory_{metric}", config=figures.CHART_CONFIG)


def race() -> None:
    engine = get_engine()
    main, rival = engine.snapshot(), engine.race_snapshot()
    if rival.status == "idle":
        return
    # both losses change every step: one chart serves every viewer for half a second (see `shared`)
    log = st.session_state.get("race_log", False)
    chart = shared_figure(
        f"adam.race.{log}",
        (main.run_id, main.status, rival.run_id, rival.status),
        partial(figures.race_figure, main, rival, log),
        max_age_s=0.5,
    )
    st.plotly_chart(chart, key="race_chart", config=figures.CHART_CONFIG)
    st.toggle("Loss on a log scale", key="race_log", persist_state="session", help=figures.LOG_HELP)
    st.markdown(f"**What the measured curves show:** {markdown_text(summaries.race_summary(main, rival))}")
    if rival.status in ("failed", "diverged"):
        st.error(markdown_text(summaries.status_text(rival)))


engine = get_engine()
main, rival = engine.snapshot(), engine.race_snapshot()
st.title("Adam's memories")
viewing.banner()
viewed = viewing.snapshot()
if viewed is None:  # a saved run that cannot be opened: the reason is on the page
    st.stop()
# a run saved before beta2 was recorded reads as the config default (torch's 0.999, which it used); with no run,
# the default recipe's is shown
beta2 = preset("default").beta2 if viewed.status == "idle" else TrainConfig.from_dict(viewed.config).beta2
st.markdown(explanation(beta2))
live(memories)
if viewing.watched_run():  # the race retrains Headwatch's claims model, not someone's own
    st.stop()

st.subheader("Race: plain SGD against the same run")
st.markdown(
    "The story says plain SGD *oscillates forever* (left, right, left…) while Adam damps the swings. "
    "The race trains the same model on the same claims with the same seed under plain SGD "
    "(learning rate 0.1), so you can see whether that holds here. It starts at step 0 whenever you press "
    "Race: started late, it goes on after this run has ended, and the chart compares the two step for "
    "step."
)
if viewing.replay_id():
    st.info("A race runs beside the live run: go back to the live run to start or watch one.")
else:
    start_column, stop_column = st.columns([3, 1])
    start_column.button(
        "Race SGD against this run",
        key="race",
        type="primary",
        on_click=start_race,
        disabled=main.status == "idle" or rival.active,
        width="stretch",
        help="Needs a run: press Train on the Train page first.",
    )
    stop_column.button(
        "Stop training",
        key="race_stop",
        on_click=engine.stop,
        disabled=not (main.active or rival.active),
        width="stretch",
        help="Stops both the race and the main run.",
    )
    if error := st.session_state.pop("race_error", None):
        st.error(error)
    if folder_error := st.session_state.get("race_folder_error"):
        st.error(folder_error)
        st.button(
            "Race without saving",
            key="race_unsaved",
            on_click=start_race,
            args=(False,),
            disabled=main.status == "idle" or rival.active,
        )
    live(race)
