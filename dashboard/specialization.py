"""Specialization: do the four heads become specialists? What each head reads beside what each reason needs from it
(engine.interpret.attribution), over training."""

from functools import partial

import streamlit as st

from dashboard import figures, head_figures, head_overview_figures, head_words, measurement, viewing
from dashboard.live import live, shared_figure
from dashboard.untrusted import markdown_text
from engine.interpret.attribution import RESAMPLES
from engine.interpret.ownership import OWNED, UNOWNED
from engine.interpret.specialization import ANALYSIS_CLAIMS
from engine.reports.reference_studies import study_of_run
from engine.telemetry import Snapshot

EXPLANATION = f"""
The story says each of the four attention heads becomes a specialist: one for medical sense, one for doses, one for
costs, one for paperwork. Here is what this run measured. **What a head looks at** is not proof of what it is for
(a word that every head stares at makes all heads look alike), so each head is named from two causal tests, which
take a head away in the only two ways the model never sees anything unlike a real claim:

- **Twin claims.** For each reason, and for each of ADMIN's four checks (sex, age, specialty, place): claims that
  break that one rule, each beside a twin with the wrong field put right, written the same way. One head at a time
  is shown what it saw on the twin, and we measure how much of the model's case for flagging the claim goes away.
  That share is how much the check **needs** the head.
- **Claims of the same kind.** Each head in turn sees what it saw on other claims of the same kind ({RESAMPLES}
  fixed claims of each kind, the answers averaged over them): the accuracy each kind of claim loses, and where its
  answers go. This finds a head that twins cannot: one that reads what a claim and its twin share (the billed item,
  say), which every reason may need.
- **Pairs.** Heads are also taken away two at a time, both ways: a head with a backup looks unneeded alone.
- A head is a **specialist** of a reason, or of one of ADMIN's two families of checks (the patient's sex and age;
  the provider's specialty and place, each counted as ADMIN), when that reason needs it ({OWNED:.0%} or more), no
  other check needs it more than {UNOWNED:.0%}, no other kind of claim (valid ones included) loses more than
  {UNOWNED:.0%} of its accuracy without it, no other head passes the same test, and no other head backs it up.
  Otherwise it **shares** a reason with the head that backs it up, **leans** to a reason that needs it, is **needed
  by** the kinds of claim that lose accuracy without it when twins find nothing, is a **generalist** when several
  reasons need it, **helps** a check (or a few of ADMIN's) that needs it in part, and has **little effect** when
  neither test finds anything.
- **Selectivity** grades it: what the reason that needs it most needs of it, minus the most any other reason needs.

Two design choices give specialists a chance, and nothing more: each cross-attention head chooses *where* to look
from the claim's words and fields as written, not from what the encoder concluded about them (it then reads those
conclusions), and each starts out looking at different words. The **sparse** recipe adds a third: a head can give
a word exactly zero weight. No training signal asks for specialists; whatever forms here formed on its own. Which
heads specialize is not settled by the recipe: runs that differ only in their seed can end differently. The studies
shipped with Headwatch (above) count it over many runs of each recipe; count your own on the **Across seeds** page
before reading much into one run.
"""


def answer(m: measurement.Measurement, snap: Snapshot) -> None:
    """The answer first, in plain words, over a picture of the heads; then what the shipped studies found."""
    so_far = measurement.unfinished(snap, m.point.step)
    st.subheader(f"{'So far' if so_far and not so_far.stopped else 'Verdict'} at step {m.point.step:,}")
    shipped = viewing.references()
    reference = study_of_run(shipped.studies, snap.config)
    accuracy = snap.evals[-1].heldout_accuracy if snap.evals else None
    st.markdown(head_words.lead_paragraph(m.cross, accuracy, so_far, reference))
    st.plotly_chart(
        head_overview_figures.heads_figure(m.cross, head_words.heads_title(m.point.step, so_far)),
        key="heads",
        config=figures.CHART_CONFIG,
    )
    for study in shipped.studies:
        st.caption(head_words.study_paragraph(study))
    for problem in shipped.problems:
        st.caption(markdown_text(problem))
    st.page_link("dashboard/seeds.py", label="Count specialists over many runs on Across seeds", icon="➡️")


def method(m: measurement.Measurement) -> None:
    """How the heads are tested, and every measurement the names rest on."""
    source = (
        "`python -m engine analyze` on the saved weights"
        if m.source == "analyze"
        else "the latest measurement taken while training"
    )
    heads = m.cross
    with st.expander("How the heads are tested"):
        st.markdown(EXPLANATION)
        st.caption(
            f"The four cross-attention heads (where the answer looks at the claim), tested on twin claims "
            f"and on {m.claims:,} held-out claims ({source})."
        )
        for column, (index, head) in zip(st.columns(len(heads)), enumerate(heads), strict=True):
            with column.container(border=True):
                st.markdown(head_words.head_sentence(index, head))
                st.caption(
                    " ".join(filter(None, (head_words.selectivity_sentence(head), head_words.reads_sentence(head))))
                )
        st.plotly_chart(head_figures.necessity_figure([m.point]), key="verdict_necessity", config=figures.CHART_CONFIG)
        st.plotly_chart(head_figures.ablation_figure([m.point]), key="verdict_ablation", config=figures.CHART_CONFIG)


def details(m: measurement.Measurement) -> None:
    pairs = head_figures.pairs_rows(m.point)
    if pairs:
        with st.expander("Heads taken away in pairs"):
            st.caption(
                "The share of each check's evidence that goes when two heads at once see what they saw on the "
                "twin, and the accuracy each reason loses when two heads at once see what they saw on claims "
                "of the same kind. Two heads share a reason when the pair takes much more than either alone: "
                "each can stand in for the other."
            )
            st.dataframe(
                pairs,
                hide_index=True,
                column_config={
                    column: st.column_config.NumberColumn(format="percent") for column in pairs[0] if column != "Heads"
                },
            )
    with st.expander("Where the answers go without each head, and each head's direct push"):
        st.plotly_chart(head_figures.answers_figure(m.point), key="verdict_answers", config=figures.CHART_CONFIG)
        st.caption(
            "Direct push: what a head's own output adds to the answer, read through the model's last step "
            "(direct logit attribution). A head can push hard and still not be needed, when another head "
            "pushes the same way; the test above, swapping one head at a time, is what names the heads."
        )
        st.plotly_chart(head_figures.direct_figure(m.point), key="verdict_direct", config=figures.CHART_CONFIG)
    if head_figures.ENCODER in m.point.heads:
        taken = head_figures.taken_away([m.point], head_figures.ENCODER)
        with st.expander(f"The encoder's four heads, when one {taken}"):
            st.caption(
                "Encoder heads let the claim's words read each other before the answer looks at them. They "
                "are not tested on twins: a head's output sits at the claim's own words, which twins do not "
                "share. Taken away, each word of a claim gets what the head gave the words of the same field "
                "in claims of the same kind."
            )
            for index, head in enumerate(m.point.heads[head_figures.ENCODER]):
                st.markdown(head_words.head_sentence(index, head))
            title = f"Encoder heads: change in accuracy when one {taken}"
            st.plotly_chart(
                head_figures.ablation_figure([m.point], head_figures.ENCODER, title=title),
                key="verdict_ablation_encoder",
                config=figures.CHART_CONFIG,
            )


def history() -> None:
    snap = viewing.snapshot()
    if snap is None:
        return
    if not snap.specialization:
        st.info(
            "The heads are measured as soon as a run starts: press Train on the Train page."
            if not snap.active
            else "Waiting for the first measurement of the heads…"
        )
        with st.expander("How the heads are tested"):
            st.markdown(EXPLANATION)
        return
    m = viewing.measurement(snap)
    if m is not None and m.cross:
        answer(m, snap)
        method(m)
        details(m)
    with st.expander("How the heads changed during training"):
        st.caption(
            f"Measured while training, on {ANALYSIS_CLAIMS} held-out claims at {len(snap.specialization)} "
            "log-spaced steps (dense early, where heads change most). Drag the slider or press Play to watch "
            "each head move from where it happened to start to where training sent it."
        )
        # built once for every viewer (see `shared`), whenever the trainer measures the heads again
        key = (snap.run_id, snap.status, len(snap.specialization), snap.specialization[-1].step)
        for name, build in (
            ("shares", head_figures.shares_figure),
            ("necessity_history", head_figures.necessity_figure),
            ("ablation_history", head_figures.ablation_figure),
            ("head_metrics", head_figures.head_metrics_figure),
        ):
            chart = shared_figure(f"specialization.{name}", key, partial(build, snap.specialization), max_age_s=5.0)
            st.plotly_chart(chart, key=name, config=figures.CHART_CONFIG)


st.title("Do the heads specialize?")
if viewing.banner():
    viewing.claims_only("Specialization")
    history()  # a saved run does not change: no need to poll
else:
    live(history)
