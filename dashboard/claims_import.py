"""The Runs page's claims imported from a CSV file: score them with a run's model, beside the rules checker's
verdict, or train a new run on them. Streamlit widgets, drawn by dashboard/runs.py; not a page of its own."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import outcome_words
from dashboard.engine_resource import get_engine
from dashboard.untrusted import markdown_text
from engine.core import ConfigError, EngineBusy, RunError, RunsFolderError
from engine.interpret.scored_csv import SCORED_COLUMNS, scored_csv
from engine.task.claims_csv import MIN_TRAINING_CLAIMS, CsvProblem, ImportedClaims
from engine.training.presets import PRESETS, preset

LIVE = "live"
SHOWN_SCORED = 200  # rows of the results table in the page; the download has them all


def score_or_train(data: bytes, claims: ImportedClaims, usable: list[str]) -> None:
    """Scoring on the left (its results table under both columns, full width), training on the right."""
    score, train = st.columns(2, gap="large")
    with score:
        scored = _score_column(data, claims, usable)
    if scored is not None:
        scored_view(scored)
    with train:
        _train_column(data)


def _score_column(data: bytes, claims: ImportedClaims, usable: list[str]) -> list[list[str]] | None:
    """The model to score with and the button; the rows scored for this very file, if any, and their download."""
    model = st.selectbox(
        "Score with",
        [LIVE, *usable],
        key="score_model",
        format_func=lambda m: "The live run (its current weights)" if m == LIVE else m,
    )
    if st.button("Score these claims", key="score"):
        _score(data, claims, None if model == LIVE else model)
    scored = st.session_state.get("scored")
    if not (scored and scored[0] == data):
        return None
    rows = scored[1]
    st.download_button(
        "Download the results (CSV)",
        data=lambda: scored_csv(rows),
        file_name="scored-claims.csv",
        mime="text/csv",
        on_click="ignore",
        key="scored_csv",
        type="primary",
    )
    return rows


def _score(data: bytes, claims: ImportedClaims, run_id: str | None) -> None:
    """Score every claim with the run's model (None: the live run), showing progress; kept with the file scored."""
    bar = st.progress(0.0, text=f"Scoring {len(claims):,} claims…")
    try:
        st.session_state.scored = (
            data,
            get_engine().score_claims(
                claims,
                run_id,
                lambda done: bar.progress(done / len(claims), text=f"Scored {done:,} of {len(claims):,} claims…"),
            ),
        )
    except RunError as error:
        st.error(markdown_text(str(error)))
    bar.empty()


def _train_column(data: bytes) -> None:
    st.selectbox("Recipe", list(PRESETS), key="import_recipe")
    st.button(
        "Train a new run on these claims",
        key="train_on_claims",
        on_click=start_on_claims,
        args=(data,),
        disabled=get_engine().snapshot().active,
        help=f"Needs at least {MIN_TRAINING_CLAIMS} claims with a label: from the file where it has "
        "them, else from the rules checker.",
    )
    if error := st.session_state.pop("import_error", None):
        st.error(markdown_text(error))
    if started := st.session_state.pop("import_started", None):
        st.success(f"Training started ({started} recipe) on these claims.")
        st.page_link("dashboard/train.py", label="Watch it on the Train page", icon="➡️")


def start_on_claims(data: bytes) -> None:
    recipe = st.session_state.import_recipe
    try:
        get_engine().start_on_claims(data, preset(recipe))
        st.session_state.import_started = recipe
    except (CsvProblem, ConfigError, EngineBusy, RunsFolderError) as error:
        st.session_state.import_error = str(error)


def scored_view(rows: list[list[str]]) -> None:
    """The scored claims in the page: the model's answer beside the rules checker's, disagreements first; a claim
    that cannot be judged says what was not read."""
    shown, judged, refused = _scored_table(rows)
    agree = int((shown["The model says"] == shown["The rules say"])[judged].sum())
    st.markdown(
        f"**The model and the rules checker agree on {agree:,} of the {int(judged.sum()):,} claims both "
        f"could judge** ({len(rows):,} scored; {int(refused.sum()):,} could not be judged on what was read)."
    )
    shown = (
        shown.assign(order=(shown["The model says"] == shown["The rules say"]) | ~judged)
        .sort_values("order", kind="stable")
        .drop(columns="order")
    )
    if len(shown) > SHOWN_SCORED:
        st.caption(f"Showing {SHOWN_SCORED} of {len(shown):,}, disagreements first; the download has every claim.")
    st.dataframe(
        shown.head(SHOWN_SCORED),
        hide_index=True,
        column_config={
            "Claim": st.column_config.TextColumn(width="large"),
            "How sure": st.column_config.NumberColumn(format="percent"),
            "Not read": st.column_config.TextColumn(help="Words of the claim Headwatch did not read"),
        },
    )


def _scored_table(rows: list[list[str]]) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """The scored claims in words, in the page's columns; which of them both the model and the rules checker could
    judge; and which the model could not judge on what was read."""
    table = pd.DataFrame(rows, columns=SCORED_COLUMNS)
    refused = table["cannot_judge"] != ""
    shown = pd.DataFrame(
        {
            "Claim": table["text"],
            "The model says": _said(table["verdict"], table["reason"]),
            "How sure": pd.to_numeric(table["confidence"], errors="coerce"),
            "The rules say": _said(table["rules_verdict"], table["rules_reason"]),
            "Not read": table["not_read"],
            "Service lines": table["lines"],
            "Problem": table["error"].where(~refused, table["cannot_judge"]),
        }
    )
    shown.loc[refused, "The model says"] = outcome_words.CANNOT_JUDGE
    judged = ~shown["The rules say"].isin((outcome_words.CANT_TELL, outcome_words.CANNOT_CHECK)) & (
        shown["Problem"] == ""
    )
    return shown, judged, refused


def _said(verdicts: pd.Series, reasons: pd.Series) -> list[str]:
    return [outcome_words.verdict_text(v, r) for v, r in zip(verdicts, reasons, strict=True)]
