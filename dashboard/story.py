"""Story: the seed's before / during / after, told with this run's own numbers, for readers new to neural networks."""

import time

import pandas as pd
import streamlit as st

from dashboard import figures, report, story_words, viewing
from dashboard.engine_resource import get_engine
from dashboard.live import DrawnFigure, live, shared
from engine.interpret.inference import Predictor
from engine.runs.listing import RunError

INTRO = """
A small program, a *transformer*, is learning to audit medical insurance claims: for each claim it answers VALID,
or INVALID with a reason (MEDICAL, DOSAGE, COST or ADMIN). Nobody writes its rules: it practises on examples and
corrects itself after every mistake. Inside it, four *attention heads* each choose which words of a claim to look
at. The story this app starts from promises that each head becomes a specialist. This page tells what really
happened in this run, with its own measurements.
"""


def story() -> None:
    snap = viewing.snapshot()
    if snap is None:
        return
    race = get_engine().race_snapshot() if viewing.replay_id() is None else None  # a race belongs to the live run
    measured = viewing.measurement(snap)
    shipped = viewing.references()
    chapters = story_words.tell_story(snap, race, measured, shipped)
    if not chapters:
        st.info("The story begins when a run does: press Train on the Train page, or open a saved run on Runs.")
        return
    # built once for every viewer (see `shared`): the curves change every step, so one set serves for a second
    key = (snap.run_id, snap.status, race and (race.run_id, race.status), measured and measured.point.step)
    charts = shared(
        "story.charts",
        key,
        lambda: {
            chapter: [DrawnFigure(f) for f in figs]
            for chapter, figs in report.chapter_figures(snap, race, measured, shipped).items()
        },
        max_age_s=1.0,
    )
    for chapter in chapters:
        st.header(chapter.title)
        for paragraph in chapter.paragraphs:
            st.markdown(paragraph)
        for index, fig in enumerate(charts[chapter.key]):
            st.plotly_chart(fig, key=f"story_{chapter.key}_{index}", config=figures.CHART_CONFIG)


def ended_predictor() -> Predictor | None:
    """The model of a run that has ended (the live one or a saved one), when it has weights."""
    snap = viewing.snapshot()
    if snap is None or snap.active or not snap.evals:
        return None
    try:
        return get_engine().predictor(viewing.replay_id())
    except RunError:
        return None  # e.g. a saved run without weights: the chapters above say what it measured


def examples() -> None:
    """A few claims as this run's model judges them, beside the rules it learned from: once the run has ended."""
    predictor = ended_predictor()
    if predictor is None:
        return
    st.header(report.EXAMPLES_TITLE)
    st.caption(report.EXAMPLES_CAPTION.format(step=predictor.step or 0))
    st.dataframe(
        pd.DataFrame(report.judged_examples(predictor)),
        hide_index=True,
        column_config={
            "Claim": st.column_config.TextColumn(width="large"),
            "How sure": st.column_config.NumberColumn(format="percent"),
        },
    )


def report_button() -> None:
    """Outside the live view: a click that lands while the view redraws would ask for a file the redraw dropped."""
    snap = viewing.snapshot()
    if snap is None:
        return
    race = get_engine().race_snapshot() if viewing.replay_id() is None else None
    measured = viewing.measurement(snap)
    shipped = viewing.references()
    if not story_words.tell_story(snap, race, measured, shipped):
        return
    predictor = ended_predictor()
    judged = (report.judged_examples(predictor), predictor.step or 0) if predictor is not None else None
    st.download_button(
        "Download this story as an HTML report",
        key="story_report",
        on_click="ignore",
        mime="text/html",
        file_name=f"headwatch-{snap.run_id or 'live'}.html",
        type="primary",
        help="One file with the text and interactive charts, as of when this page was opened or the run last "
        "started, paused or ended; it opens in any browser, without internet.",
        # Built only when clicked, outside the script run: a pure function of data captured now.
        data=lambda: report.html_report(
            snap, race, measured, f"Created {time.strftime('%Y-%m-%d %H:%M')}.", judged, shipped
        ).encode(),
    )


st.title("The story of this run")
st.markdown(INTRO)
if viewing.banner():
    viewing.claims_only("The Story")
    story()
else:
    live(story)
examples()
report_button()
