"""Specialization: do the four heads become specialists? Attention shares beside ablation evidence, over training."""

from functools import partial

import streamlit as st

from dashboard import figures, head_figures, report, viewing
from dashboard.live import live, shared_figure
from engine.analysis import ANALYSIS_CLAIMS

EXPLANATION = """
The story says each of the four attention heads becomes a specialist: one for medical sense, one for doses, one for
costs, one for paperwork. Here is what this run measured. **What a head looks at** is not proof of what it is for:
a word that every head stares at (an *attention sink*) makes all heads look alike. So every head is named only from
**what breaks when it is switched off** (its ablation), and called a *generalist* when no single reason depends on it.

Two design choices give specialists a chance, and nothing more: each cross-attention head chooses *where* to look
from the claim's words and fields as written, not from what the encoder concluded about them (it then reads those
conclusions), and each starts out looking at different words. Looking by the encoder's conclusions, one head
learned to find "whichever word is wrong" for every reason, and specialists seldom formed. No training signal asks
for specialists; whatever forms here formed on its own.

Which heads specialize, and how many, is not settled by the recipe: runs that differ only in their seed (their
starting weights and the order of their batches) measured anywhere from no specialist to two, and in earlier
recipes up to three. Train another seed and compare the two on the **Runs** page before reading much into one run.
"""


def verdict(m: report.Measurement, training: bool) -> None:
    source = ("`python -m engine analyze` on the saved weights" if m.source == "analyze"
              else "the latest measurement taken while training")
    st.subheader(f"{'So far' if training else 'Verdict'} at step {m.point.step:,}")
    st.caption(f"The four cross-attention heads (where the answer looks at the claim), each switched off in turn on "
               f"{m.claims:,} held-out claims ({source}).")
    heads = m.cross
    specialists = sum(h.label.endswith("specialist") for h in heads)
    (st.success if specialists else st.warning)(report.promise_sentence(heads))
    for column, (index, head) in zip(st.columns(len(heads)), enumerate(heads), strict=True):
        with column.container(border=True):
            st.markdown(report.head_sentence(index, head))
            st.caption(report.reads_sentence(head))
    st.plotly_chart(head_figures.ablation_figure([m.point], title="Ablation matrix: change in accuracy per reason "
                                                 "(and on valid claims) when one head is switched off"),
                    key="verdict_ablation", config=figures.CHART_CONFIG)
    if head_figures.ENCODER in m.point.heads:
        with st.expander("The encoder's four heads, measured the same way"):
            st.caption("Encoder heads let the claim's words read each other before the answer looks at them.")
            for index, head in enumerate(m.point.heads[head_figures.ENCODER]):
                st.markdown(report.head_sentence(index, head))
            st.plotly_chart(head_figures.ablation_figure([m.point], head_figures.ENCODER,
                                                         title="Ablation matrix, encoder heads"),
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
               "log-spaced steps (dense early, where heads change most), so the last step can differ a little from "
               "the verdict above. Drag the slider or press Play to watch each head move from where it "
               "happened to start to where training sent it.")
    # built once for every viewer (see `shared`), whenever the trainer measures the heads again
    key = (snap.run_id, snap.status, len(snap.specialization), snap.specialization[-1].step)
    for name, build in (("shares", head_figures.shares_figure), ("ablation_history", head_figures.ablation_figure),
                        ("head_metrics", head_figures.head_metrics_figure)):
        chart = shared_figure(f"specialization.{name}", key, partial(build, snap.specialization), max_age_s=5.0)
        st.plotly_chart(chart, key=name, config=figures.CHART_CONFIG)


st.title("Do the heads specialize?")
st.markdown(EXPLANATION)
if viewing.banner():
    history()  # a saved run does not change: no need to poll
else:
    live(history)
