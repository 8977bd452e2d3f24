"""Runs: every saved run; reopen one read-only, compare two, export one, and import claims to score or train on."""

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from dashboard import figures, head_figures, report, viewing
from dashboard.claims_import import score_or_train
from dashboard.engine_resource import get_engine
from dashboard.run_table import compared_row, damage_text, run_rows
from dashboard.untrusted import markdown_text
from engine.core import TRAINING_NOW, RunError
from engine.runs.layout import is_watched
from engine.task.claims_csv import CsvProblem, read_claims_csv
from engine.telemetry import Snapshot

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
        score_or_train(data, claims, usable)
