"""Where the verdict forms: for each reason, the fields of a claim at which the encoder has already told that reason's
claims from valid ones (engine.interpret.probes), over training."""

from pathlib import Path

import streamlit as st

from dashboard import figures, viewing
from dashboard.live import live
from dashboard.untrusted import markdown_text
from dashboard.verdict_figures import verdict_figure
from data.rules import REASONS
from engine.interpret.probes import (
    FIELD_NAMES,
    FIRST_RECORDED,
    FIT_CLAIMS,
    FORMED,
    GAIN,
    HUB_REASONS,
    ProbeTable,
    hub_line,
    read_probes,
    recorded_steps,
    where_it_forms,
)
from engine.runs.listing import RunError
from engine.training.presets import DEFAULT

LATEST = "latest"
LEAD = """
Before the model answers, its encoder lets every word of a claim read the others. So at each field of a claim (the
diagnosis, the billed item, the dose, the price, the patient, the provider) we ask a simple reader that sees only
what the encoder made of that one field: *is this a valid claim, or one with a MEDICAL (or DOSAGE, COST, ADMIN)
problem?* Where it is right far more often than it is from the word alone, the model has already made up its mind
at that field. If the MEDICAL, DOSAGE and COST verdicts all gather at the billed item, every answer head finds them
there in one place, and no change to the answer's heads alone can give each reason a head of its own.
"""
METHOD = f"""
- **The reader** is a linear probe (logistic regression) for each reason and each field: fitted on the first
  {FIT_CLAIMS:,} claims of the run's training pool, claims of that reason against as many valid ones, and scored
  on the run's held-out claims. Its score is the **balanced accuracy**: the average of how often it is right on the
  reason's claims and on valid claims, so 0.50 is a guess whatever their numbers.
- **After the encoder** is what the answer's cross-attention reads at that field (the encoder's output, averaged
  over the field's words, as a drug and a procedure both count as the billed item). **The word alone** is the same
  probe on the field's embedding before the encoder: a dose of 9,000 mg is suspicious on its own. A verdict has
  **formed** at a field (✓) where the probe after the encoder reaches {FORMED:.2f} and beats the word alone by
  {GAIN:.2f} or more. It forms **everywhere** when that holds at every field measured.
- A blank cell had too few claims to measure (fewer than 20 of the reason or of valid claims with that field).
- Runs record this table while they train, at steps 0, {FIRST_RECORDED}, and every fourfold after, and at their
  end: each costs about a second, which the run's training time includes.
- A linear probe shows what can be read at a field, not that the model reads it there: that is what the
  **Specialization** page tests, by taking heads away. The billed item is a **hub** when {", ".join(HUB_REASONS)}
  all form there.
- The same table, for a saved run's latest weights: `python -m engine analyze --run <its folder> --probes`.
"""


def lead_result(table: ProbeTable, so_far: bool) -> str:
    """The finding in plain words: the hub, then one sentence per reason."""
    when = f"So far, at step {table.step:,} of a run still training" if so_far else f"At step {table.step:,}"
    return f"**{when}:** {hub_line(table)} " + " ".join(where_it_forms(table, reason) for reason in REASONS)


def no_tables(folder: str | None, active: bool, run_id: str | None) -> None:
    """Say why there is no table, and how to get one."""
    if run_id is None and not active:
        st.info("The table appears as soon as a run trains: press Train on the Train page.")
    elif folder is None:
        st.info(
            "This run is not being saved, and where its verdicts form is recorded in a run's folder: train with "
            "saving on to see it."
        )
    elif active:
        st.info("Waiting for the first table, measured before the first step…")
    else:
        steps = ", ".join(f"{s:,}" for s in recorded_steps(DEFAULT.steps)[:-1])
        st.info(
            f"This run has no record of where its verdicts form: it was trained before Headwatch recorded it. "
            f"Runs trained now record it as they train (a run of the default recipe at steps {steps} and at its "
            "end). For this run's latest weights, this command prints the table:"
        )
        st.code(f"python -m engine analyze --run {folder} --probes", language="bash")


def chosen_table(tables: list[ProbeTable], step: int | str) -> ProbeTable:
    return tables[-1] if step == LATEST else min(tables, key=lambda t: abs(t.step - step))


def step_slider(tables: list[ProbeTable]) -> int | str:
    steps = [t.step for t in tables]
    if st.session_state.get("verdict_step") not in [*steps, LATEST]:
        st.session_state.verdict_step = LATEST
    return st.select_slider(
        "Training step",
        [*steps, LATEST],
        key="verdict_step",
        persist_state="session",
        format_func=lambda s: "latest" if s == LATEST else f"step {s:,}",
        help="Slide left to see where the verdicts stood earlier in training.",
    )


def tables_of(folder: str | None) -> list[ProbeTable] | None:
    """The viewed run's recorded tables; None (after saying why) when its file cannot be read."""
    if folder is None:
        return []
    try:
        return read_probes(Path(folder))
    except RunError as error:
        st.error(markdown_text(f"Where this run's verdicts form cannot be shown: {error}"))
        return None


def view(step: int | str) -> None:
    snap = viewing.snapshot()
    if snap is None:
        return
    tables = tables_of(snap.run_dir)
    if tables is None:
        return
    if not tables:
        no_tables(snap.run_dir, snap.active, snap.run_id)
        return
    table = chosen_table(tables, step)
    so_far = snap.active and table is tables[-1]
    st.markdown(lead_result(table, so_far))
    st.plotly_chart(verdict_figure(table, so_far), key="verdict_table", config=figures.CHART_CONFIG)
    fields = ", ".join(FIELD_NAMES.values())
    st.caption(
        f"Rows: the reasons; columns: the fields ({fields}). 0.50 is a guess, 1.00 always right; ✓: the "
        "verdict has formed there."
    )


st.title("Where the verdict forms")
viewing.banner()
st.markdown(LEAD)
with st.expander("How this is measured"):
    st.markdown(METHOD)
viewing.claims_only("Where the verdict forms")
shown = viewing.snapshot()
try:
    recorded = read_probes(Path(shown.run_dir)) if shown is not None and shown.run_dir else []
except RunError:
    recorded = []  # the view below says why
chosen = step_slider(recorded) if len(recorded) > 1 else LATEST
if viewing.replay_id():
    view(chosen)  # a saved run does not change: no need to poll
else:
    live(lambda: view(chosen))
