"""Across seeds: one recipe trained with several seeds, and what their heads have in common (engine.reports.study)."""

import pandas as pd
import streamlit as st

from dashboard.engine_resource import get_engine
from dashboard.untrusted import markdown_text
from data.rules import REASONS
from engine.core import MAX_STUDY_SEEDS, ConfigError, EngineBusy, RunsFolderError
from engine.reports.study_results import SeedResult, summarize
from engine.reports.study_words import summary_sentence
from engine.training.presets import PRESETS, preset, recipes_told

EXPLANATION = """
One run is an anecdote. Two runs of the same recipe that differ only in their **seed** (the starting weights and
the order the claims come in) can end with different heads: one with a DOSAGE specialist, another with none. Here
the same recipe is trained with several seeds, every run's heads are measured the same way as on the
**Specialization** page, and the results are counted: how many runs gave each reason its own head, and in how many
others a head only **leans** to it (that reason needs the head, but so does another check, valid claims, or another
head passes for it too).

Each seed trains in its own process on one core, two at a time, so a seed repeats exactly if trained again. The
live run on the Train page shares the same cores while a study trains. A study that is stopped resumes where it
was; finished seeds are never trained twice.
"""


def controls() -> tuple[str, int]:
    left, right = st.columns(2)
    name = left.selectbox(
        "Recipe", sorted(PRESETS), index=sorted(PRESETS).index("default"), key="study_preset", help=recipes_told()
    )
    seeds = right.number_input(
        "Seeds",
        min_value=2,
        max_value=MAX_STUDY_SEEDS,
        value=5,
        step=1,
        key="study_seeds",
        help="Seeds 0, 1, 2, ... of the recipe",
    )
    st.caption(f"Each seed trains {preset(name).steps:,} steps, as a run of this recipe does.")
    return name, int(seeds)


def start_or_stop(name: str, seeds: int) -> None:
    engine = get_engine()
    if engine.study is not None and engine.study.active:
        if st.button("Stop the study", key="stop_study"):
            engine.study.stop()
    elif st.button(f"Train {seeds} seeds", type="primary", key="start_study"):
        try:
            engine.start_study(name, seeds)
        except (ConfigError, EngineBusy, RunsFolderError) as error:
            st.error(str(error))


NOT_LEARNED = "not named: this run did not learn to audit claims"


def seed_rows(results: list[SeedResult]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "Seed": r.seed,
                "Held-out accuracy": r.accuracy,
                "Specialists": r.specialists if r.learned else None,
                "Heads": "; ".join(r.labels) if r.learned else NOT_LEARNED,
            }
            for r in results
        ]
    )


def results_view(results: list[SeedResult]) -> None:
    summary = summarize(results)
    st.info(summary_sentence(summary))  # neutral: one specialist in five runs is a finding, not a success
    if not summary["learned"]:
        st.dataframe(seed_rows(results), hide_index=True)
        return
    for column, reason in zip(st.columns(len(REASONS)), REASONS, strict=True):
        column.metric(f"{reason}: its own head", f"{summary['owned_in'][reason]} of {summary['learned']} runs")
        leaned = (summary["leaned_to_in"] or {}).get(reason)
        if leaned:
            column.caption(f"and a head leaning to it in {leaned} other run{'s' if leaned > 1 else ''}")
    st.dataframe(
        seed_rows(results),
        hide_index=True,
        column_config={
            "Held-out accuracy": st.column_config.NumberColumn(format="percent"),
            "Heads": st.column_config.TextColumn(width="large"),
        },
    )
    if summary["matched_heads"]:
        matched_view(summary["matched_heads"], [r for r in results if r.learned])


def matched_view(matched_heads: list[list[int]], results: list[SeedResult]) -> None:
    """One row per seed and one column per head of the first seed, so that many seeds grow the table downwards."""
    first = results[0].seed
    st.caption(
        f"Heads matched across seeds: each column follows one head of seed {first}; in every other seed's row "
        "it shows the head that does the most similar work (what each check needs from it)."
    )
    labels = [[results[s].labels[j] for s, j in enumerate(heads)] for heads in matched_heads]
    roles = pd.DataFrame(
        list(zip(*labels, strict=True)), columns=[f"Head {i + 1} of seed {first}" for i in range(len(matched_heads))]
    )
    roles.insert(0, "Seed", [r.seed for r in results])
    st.dataframe(roles, hide_index=True)


@st.fragment(run_every=2.0)
def study_view(name: str, seeds: int) -> None:
    start_or_stop(name, seeds)
    engine = get_engine()
    study = engine.study
    training = study is not None and study.active and study.out == engine.study_folder(name, seeds)
    saved = engine.saved_study(name, seeds)
    results = saved[1] if saved else []
    if training:
        st.progress(len(results) / seeds, text=f"{len(results)} of {seeds} seeds trained and measured")
        st.caption(markdown_text(study.lines[-1]) if study.lines else "Starting…")
    elif study is not None and study.active:
        st.info(f"Another study is training ({study.out.name}): stop it, or choose its recipe and seeds to watch it.")
    elif study is not None and study.error and study.out == engine.study_folder(name, seeds):
        st.error(markdown_text(f"The study stopped: {study.error}"))
    if results:
        results_view(results)
    elif not training:
        st.info(f"No study of {seeds} seeds of this recipe yet: press Train {seeds} seeds.")


st.title("Does it happen every time?")
st.markdown(EXPLANATION)
recipe, count = controls()
study_view(recipe, count)
