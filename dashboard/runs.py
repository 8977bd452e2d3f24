"""Runs: every saved run; reopen one read-only, compare two, export one, and import claims to score or train on."""

import time

import pandas as pd
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from dashboard import figures, head_figures, outcome_words, report, summaries, viewing
from dashboard.engine_resource import get_engine
from dashboard.untrusted import markdown_text
from engine.core import TRAINING_NOW, ConfigError, EngineBusy, RunError, RunsFolderError
from engine.interpret.labels import head_label
from engine.interpret.scored_csv import SCORED_COLUMNS, scored_csv
from engine.runs.layout import is_watched
from engine.runs.listing import RunSummary
from engine.task.claims_csv import MIN_TRAINING_CLAIMS, CsvProblem, ImportedClaims, read_claims_csv
from engine.telemetry import Snapshot
from engine.training.presets import PRESETS, preset

LIVE = "live"
LOAD_WEIGHTS = (
    "Load it into the model with `model.load_state_dict(torch.load(path, weights_only=True))`, where "
    "`model = ClaimsTransformer(ModelConfig.from_dict(config['model']))` from `engine.task.claims_model` "
    "and `config = read_config(run_folder)` from `engine.runs.reading` (which reads runs saved by older "
    "versions too)."
)
PAGES = (
    ("dashboard/specialization.py", "Specialization"),
    ("dashboard/inspect_claim.py", "Inspect"),
    ("dashboard/story.py", "Story"),
)


def run_rows(runs: list[RunSummary]) -> list[dict]:
    return [
        {
            "Started": time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started)),
            "Run": r.run_id,
            "Recipe": r.preset if r.watched_heads is None else "your own model",
            "Optimizer": r.optimizer,
            "Seed": r.seed if r.watched_heads is None else None,  # a watched loop's seed is its own, unknown here
            "Steps": r.step,
            "Status": r.status,
            "Accuracy": r.accuracy,
            "Heads": heads_cell(r),
        }
        for r in runs
    ]


def heads_cell(run: RunSummary) -> str:
    """Headwatch's own runs: what each cross-attention head was found to do (not named for a run that learned
    nothing). A watched model's: what was recorded."""
    if run.watched_heads is not None:
        return watched_heads_text(run.watched_heads)
    if not run.learned:
        return "not named: it did no better than answering its commonest outcome to every claim"
    return ", ".join(head_label(h) for h in run.heads) or "not measured"


def watched_heads_text(heads: tuple[int, ...]) -> str:
    if not heads:
        return "no attention found: the loss and your metrics only"
    low, high = min(heads), max(heads)
    modules = f"{len(heads)} attention module{'s' if len(heads) != 1 else ''}"
    return f"{modules}, {low if low == high else f'{low} to {high}'} heads each"


def damage_text(runs: list[RunSummary]) -> str | None:
    """Every damaged run, or one saved in a format this version does not read, with what is wrong with it, in full
    (a table column would cut it off)."""
    damaged = [
        f"- **{markdown_text(r.run_id)}**: {markdown_text(r.problem or r.note)}" for r in runs if r.problem or r.note
    ]
    if not damaged:
        return None
    return "Runs with a problem (the ones that cannot be opened are not offered below):\n" + "\n".join(damaged)


def compared_row(letter: str, snap: Snapshot, claims: bool) -> dict:
    """A run's numbers; the claims model's held-out accuracy only when both runs are claims runs (someone's own
    model, recorded by headwatch.watch, has only its loss)."""
    row = {"": letter, "Run": snap.run_id, "Settings": summaries.config_text(snap.config)}
    if claims:
        last, reached = snap.latest_eval, snap.first_reaching(0.95)
        row |= {
            "Final held-out accuracy": last.heldout_accuracy if last else None,
            "Reached 95% at step": f"{reached.step:,}" if reached is not None else "not reached",
        }
    else:
        row |= {"Steps": snap.step, "Last training loss": snap.loss.values[-1] if snap.loss.values else None}
    return row | {"Training time": summaries.duration(snap.seconds)}


def compare(first: str, second: str) -> None:
    """Two runs side by side: one table of their numbers, one chart of both curves, then each one's heads."""
    snaps = {}
    for letter, run_id in (("A", first), ("B", second)):
        try:
            snaps[letter] = viewing.saved_snapshot(run_id)
        except RunError as error:
            st.error(markdown_text(f"Run {run_id} cannot be opened: {error}"))
    if len(snaps) < 2:
        return
    claims = not any(is_watched(snap.config) for snap in snaps.values())
    st.dataframe(
        [compared_row(letter, snap, claims) for letter, snap in snaps.items()],
        hide_index=True,
        column_config={
            "Settings": st.column_config.TextColumn(width="large"),
            "Final held-out accuracy": st.column_config.NumberColumn(format="percent"),
        },
    )
    st.plotly_chart(figures.compare_figure(snaps["A"], snaps["B"]), key="compare_curves", config=figures.CHART_CONFIG)
    for column, (letter, snap) in zip(st.columns(2, gap="large"), snaps.items(), strict=True):
        heads(column, snap, letter)


def heads(column: DeltaGenerator, snap: Snapshot, letter: str) -> None:
    with column:
        measured = viewing.measurement(snap)
        if measured:
            title = f"Run {letter}, step {measured.point.step:,}: what each check needs from each head"
            st.plotly_chart(
                head_figures.necessity_figure([measured.point], title=title),
                key=f"necessity_{letter}",
                config=figures.CHART_CONFIG,
            )


METRICS_HELP = (
    "One row per training step: the loss, held-out accuracy where it was measured, each head's Adam "
    "statistics and each head's name where they were measured"
)
WATCHED_METRICS_HELP = (
    "One row per training step: the loss, the numbers your loop reported beside it, and each "
    "head's optimizer statistics where they were measured"
)
NO_WATCHED_WEIGHTS = (
    "No weights to export: a watched run saves none, as your own training loop keeps your model "
    "(`torch.save(model.state_dict(), path)` saves it)."
)


def export(run_id: str) -> None:
    """What the run holds, to download: its metrics, its TensorBoard files if it wrote them, and for Headwatch's own
    runs its weights and story report (a watched model's weights stay with its loop, and its story is not claims)."""
    engine = get_engine()
    try:
        snap = viewing.saved_snapshot(run_id)
    except RunError as error:
        st.error(markdown_text(f"Run {run_id} cannot be exported: {error}"))
        return
    watched = is_watched(snap.config)
    tensorboard = engine.tensorboard_files(run_id)
    columns = iter(st.columns(2 + bool(tensorboard) + (not watched)))
    next(columns).download_button(
        "Metrics (CSV)",
        data=lambda: engine.metrics_csv(run_id),
        on_click="ignore",
        file_name=f"{run_id}-metrics.csv",
        mime="text/csv",
        width="stretch",
        key="export_csv",
        help=WATCHED_METRICS_HELP if watched else METRICS_HELP,
    )
    if tensorboard:
        next(columns).download_button(
            "TensorBoard files (zip)",
            data=lambda: engine.tensorboard_zip(run_id),
            on_click="ignore",
            file_name=f"{run_id}-tensorboard.zip",
            mime="application/zip",
            width="stretch",
            key="export_tensorboard",
            help=f"The {len(tensorboard)} event file{'s' if len(tensorboard) != 1 else ''} of its tensorboard/ "
            "folder: unzip, then `tensorboard --logdir` the folder",
        )
    if watched:
        next(columns).caption(NO_WATCHED_WEIGHTS)
    else:
        own_run_exports(run_id, snap, next(columns), next(columns))


def own_run_exports(run_id: str, snap: Snapshot, weights: DeltaGenerator, story: DeltaGenerator) -> None:
    """A Headwatch run's weights, and its story report with the claims it judges."""
    engine = get_engine()
    try:
        checkpoint: bytes | None = engine.checkpoint_bytes(run_id)
    except RunError as error:
        checkpoint, missing = None, markdown_text(f"No weights to export: {error}.")
    if checkpoint is None:
        weights.caption(missing)
    else:
        weights.download_button(
            "Weights (PyTorch state_dict)",
            data=checkpoint,
            file_name=f"{run_id}.pt",
            mime="application/octet-stream",
            on_click="ignore",
            width="stretch",
            key="export_pt",
            help=LOAD_WEIGHTS,
        )
    measured = viewing.measurement(snap)
    predictor = None if checkpoint is None else engine.predictor(run_id)
    judged = None if predictor is None else (report.judged_examples(predictor), predictor.step or 0)
    shipped = viewing.references()
    story.download_button(
        "Story report (HTML)",
        on_click="ignore",
        mime="text/html",
        width="stretch",
        file_name=f"headwatch-{run_id}.html",
        key="export_html",
        type="primary",
        data=lambda: report.html_report(snap, None, measured, examples=judged, references=shipped).encode(),
    )


def open_chosen() -> None:
    # read the choice at click time: args bound when the button was drawn can be one selection behind
    viewing.open_run(st.session_state.open_run)


def start_on_claims(data: bytes) -> None:
    recipe = st.session_state.import_recipe
    try:
        get_engine().start_on_claims(data, preset(recipe))
        st.session_state.import_started = recipe
    except (CsvProblem, ConfigError, EngineBusy, RunsFolderError) as error:
        st.session_state.import_error = str(error)


SHOWN_SCORED = 200  # rows of the results table in the page; the download has them all


def scored_view(rows: list[list[str]]) -> None:
    """The scored claims in the page: the model's answer beside the rules checker's, disagreements first; a claim
    that cannot be judged says what was not read."""
    table = pd.DataFrame(rows, columns=SCORED_COLUMNS)

    def said(verdicts: pd.Series, reasons: pd.Series) -> list[str]:
        return [outcome_words.verdict_text(v, r) for v, r in zip(verdicts, reasons, strict=True)]

    refused = table["cannot_judge"] != ""
    shown = pd.DataFrame(
        {
            "Claim": table["text"],
            "The model says": said(table["verdict"], table["reason"]),
            "How sure": pd.to_numeric(table["confidence"], errors="coerce"),
            "The rules say": said(table["rules_verdict"], table["rules_reason"]),
            "Not read": table["not_read"],
            "Service lines": table["lines"],
            "Problem": table["error"].where(~refused, table["cannot_judge"]),
        }
    )
    shown.loc[refused, "The model says"] = outcome_words.CANNOT_JUDGE
    judged = ~shown["The rules say"].isin((outcome_words.CANT_TELL, outcome_words.CANNOT_CHECK)) & (
        shown["Problem"] == ""
    )
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


def imported(data: bytes, claims: ImportedClaims, usable: list[str]) -> None:
    engine = get_engine()
    score, train = st.columns(2, gap="large")
    with score:
        model = st.selectbox(
            "Score with",
            [LIVE, *usable],
            key="score_model",
            format_func=lambda m: "The live run (its current weights)" if m == LIVE else m,
        )
        if st.button("Score these claims", key="score"):
            bar = st.progress(0.0, text=f"Scoring {len(claims):,} claims…")
            try:
                st.session_state.scored = (
                    data,
                    engine.score_claims(
                        claims,
                        None if model == LIVE else model,
                        lambda done: bar.progress(
                            done / len(claims), text=f"Scored {done:,} of {len(claims):,} claims…"
                        ),
                    ),
                )
            except RunError as error:
                st.error(markdown_text(str(error)))
            bar.empty()
        scored = st.session_state.get("scored")
        if scored and scored[0] == data:
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
    if scored and scored[0] == data:
        scored_view(scored[1])
    with train:
        st.selectbox("Recipe", list(PRESETS), key="import_recipe")
        st.button(
            "Train a new run on these claims",
            key="train_on_claims",
            on_click=start_on_claims,
            args=(data,),
            disabled=engine.snapshot().active,
            help=f"Needs at least {MIN_TRAINING_CLAIMS} claims with a label: from the file where it has "
            "them, else from the rules checker.",
        )
        if error := st.session_state.pop("import_error", None):
            st.error(markdown_text(error))
        if started := st.session_state.pop("import_started", None):
            st.success(f"Training started ({started} recipe) on these claims.")
            st.page_link("dashboard/train.py", label="Watch it on the Train page", icon="➡️")


engine = get_engine()
st.title("Saved runs")
viewing.banner()
runs = engine.list_runs()
# a run being trained is watched live on the other pages; its files are still being written
usable = [r.run_id for r in runs if r.problem is None and r.status != TRAINING_NOW]
if runs:
    st.dataframe(
        run_rows(runs),
        hide_index=True,
        column_config={
            "Accuracy": st.column_config.NumberColumn(
                format="percent", help="Held-out accuracy at the last evaluation"
            ),
            "Heads": st.column_config.TextColumn(
                width="large",
                help="Cross-attention heads, named by what each reason needs from them (see Specialization)",
            ),
        },
    )
    if damage := damage_text(runs):
        st.warning(damage)
else:
    st.info("No saved runs yet: every run trained on the Train page is saved and listed here.")

st.subheader("Open a run read-only")
if usable:
    choice, button = st.columns([3, 1], vertical_alignment="bottom")
    # back from another page (Streamlit forgets a widget that was not drawn), the run being viewed stays chosen
    opened = viewing.replay_id()
    choice.selectbox("Run", usable, key="open_run", index=usable.index(opened) if opened in usable else 0)
    button.button("Open read-only", key="open", on_click=open_chosen, width="stretch")
    if viewing.replay_id():
        for column, (page, title) in zip(st.columns(len(PAGES)), PAGES, strict=True):
            column.page_link(page, label=f"See it on {title}", icon="➡️")

st.subheader("Compare two runs")
if len(usable) >= 2:
    left, right = st.columns(2, gap="large")
    compare(
        left.selectbox("Run A", usable, index=0, key="compare_a"),
        right.selectbox("Run B", usable, index=1, key="compare_b"),
    )
else:
    st.caption("Comparing needs two saved runs.")

st.subheader("Export a run")
if usable:
    export(st.selectbox("Run to export", usable, key="export_run"))

st.subheader("Import claims (CSV)")
st.caption(
    "A `text` column, and optionally `verdict` (VALID or INVALID) and `reason` (NONE, MEDICAL, DOSAGE, COST "
    "or ADMIN). Up to 5 MB and 50,000 claims. Score them with a model, or train a new run on them."
)
upload = st.file_uploader("Claims file", type=["csv"], key="claims_upload")
if upload is not None:
    data = upload.getvalue()
    try:
        claims = read_claims_csv(data, upload.name)
    except CsvProblem as problem:
        st.error(markdown_text(str(problem)))
    else:
        labelled = sum(v is not None for v in claims.verdicts)
        blank = f"; {claims.skipped_blank:,} blank lines skipped" if claims.skipped_blank else ""
        read = f"{len(claims):,} claim{'s' if len(claims) != 1 else ''}"
        st.success(f"{read} read from {markdown_text(upload.name)}, {labelled:,} of them labelled{blank}.")
        st.caption(f"The first {min(len(claims), 5)} of {len(claims):,}:")
        st.dataframe(
            [
                {"text": t, "verdict": v, "reason": r}
                for t, v, r in zip(claims.texts[:5], claims.verdicts, claims.reasons, strict=False)
            ],
            hide_index=True,
        )
        imported(data, claims, usable)
