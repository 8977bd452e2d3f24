"""Specialization: do the four heads become specialists? What each head reads beside what each reason needs from it
(engine.attribution), over training."""

from functools import partial

import streamlit as st

from dashboard import figures, head_figures, report, viewing
from dashboard.live import live, shared_figure
from engine.analysis import ANALYSIS_CLAIMS
from engine.ownership import OWNED, SPECIALIST, UNOWNED

EXPLANATION = f"""
The story says each of the four attention heads becomes a specialist: one for medical sense, one for doses, one for
costs, one for paperwork. Here is what this run measured. **What a head looks at** is not proof of what it is for
(a word that every head stares at makes all heads look alike), so each head is named from a causal test:

- **Twin claims.** For each reason, and for each of ADMIN's four checks (sex, age, specialty, place): claims that
  break that one rule, each beside a twin with the wrong field put right, written the same way.
- **Swap one head.** The head is shown what it saw on the twin, and we measure how much of the model's case for
  flagging the claim goes away. That share is how much the check **needs** the head.
- A head is a **specialist** of a reason when that reason needs it ({OWNED:.0%} or more), no other reason or check
  needs it more than {UNOWNED:.0%}, valid claims still pass without it, and no other head passes the same test. It
  **leans** to a reason that needs it when the rest fails, is a **generalist** when checks of several reasons need
  it, **helps** a check (or a few of ADMIN's) that needs it in part, and has **little effect** when none does.
- **Average output.** Each head is also given its average output over a mix of all kinds of claims: the accuracy
  lost, and where the answers went (a claim that loses its evidence may be called MEDICAL instead of its reason).

Two design choices give specialists a chance, and nothing more: each cross-attention head chooses *where* to look
from the claim's words and fields as written, not from what the encoder concluded about them (it then reads those
conclusions), and each starts out looking at different words. The **sparse** recipe adds a third: a head can give
a word exactly zero weight, and over 8 seeds its heads owned a reason in 5 runs where the default's did in 2. No
training signal asks for specialists; whatever forms here formed on its own. Which heads specialize is not settled
by the recipe: runs that differ only in their seed can end differently. Count them over seeds on the **Across
seeds** page before reading much into one run.
"""


def verdict(m: report.Measurement, training: bool) -> None:
    source = ("`python -m engine analyze` on the saved weights" if m.source == "analyze"
              else "the latest measurement taken while training")
    st.subheader(f"{'So far' if training else 'Verdict'} at step {m.point.step:,}")
    st.caption(f"The four cross-attention heads (where the answer looks at the claim), tested on twin claims and on "
               f"{m.claims:,} held-out claims ({source}).")
    heads = m.cross
    specialists = sum(h.kind == SPECIALIST for h in heads)
    (st.success if specialists else st.warning)(report.promise_sentence(heads))
    for column, (index, head) in zip(st.columns(len(heads)), enumerate(heads), strict=True):
        with column.container(border=True):
            st.markdown(report.head_sentence(index, head))
            st.caption(report.reads_sentence(head))
    st.plotly_chart(head_figures.necessity_figure([m.point]), key="verdict_necessity", config=figures.CHART_CONFIG)
    st.plotly_chart(head_figures.ablation_figure([m.point]), key="verdict_ablation", config=figures.CHART_CONFIG)
    with st.expander("Where the answers go without each head, and each head's direct push"):
        st.plotly_chart(head_figures.answers_figure(m.point), key="verdict_answers", config=figures.CHART_CONFIG)
        st.caption("Direct push: what a head's own output adds to the answer, read through the model's last step "
                   "(direct logit attribution). A head can push hard and still not be needed, when another head "
                   "pushes the same way; the test above, swapping one head at a time, is what names the heads.")
        st.plotly_chart(head_figures.direct_figure(m.point), key="verdict_direct", config=figures.CHART_CONFIG)
    if head_figures.ENCODER in m.point.heads:
        with st.expander("The encoder's four heads, given their average output"):
            st.caption("Encoder heads let the claim's words read each other before the answer looks at them. They "
                       "are not tested on twins: a head's output sits at the claim's own words, which twins do not "
                       "share.")
            for index, head in enumerate(m.point.heads[head_figures.ENCODER]):
                st.markdown(report.head_sentence(index, head))
            title = "Encoder heads: change in accuracy when one gives its average output"
            st.plotly_chart(head_figures.ablation_figure([m.point], head_figures.ENCODER, title=title),
                            key="verdict_ablation_encoder", config=figures.CHART_CONFIG)


def history() -> None:
    snap = viewing.snapshot()
    if snap is None:
        return
    if not snap.specialization:
        st.info("The heads are measured as soon as a run starts: press Train on the Train page."
                if not snap.active else "Waiting for the first measurement of the heads…")
        return
    m = viewing.measurement(snap)
    if m is not None:
        verdict(m, snap.active)
    st.subheader("How it got there")
    st.caption(f"Measured while training, on {ANALYSIS_CLAIMS} held-out claims at {len(snap.specialization)} "
               "log-spaced steps (dense early, where heads change most). Drag the slider or press Play to watch "
               "each head move from where it happened to start to where training sent it.")
    # built once for every viewer (see `shared`), whenever the trainer measures the heads again
    key = (snap.run_id, snap.status, len(snap.specialization), snap.specialization[-1].step)
    for name, build in (("shares", head_figures.shares_figure), ("necessity_history", head_figures.necessity_figure),
                        ("ablation_history", head_figures.ablation_figure),
                        ("head_metrics", head_figures.head_metrics_figure)):
        chart = shared_figure(f"specialization.{name}", key, partial(build, snap.specialization), max_age_s=5.0)
        st.plotly_chart(chart, key=name, config=figures.CHART_CONFIG)


st.title("Do the heads specialize?")
st.markdown(EXPLANATION)
if viewing.banner():
    viewing.claims_only("Specialization")
    history()  # a saved run does not change: no need to poll
else:
    live(history)
