"""Attention: per-head heatmaps on a probe claim (or, for a watched model, an example of its batch), live or at any
stored step."""

import streamlit as st

from dashboard import attention_figures, figures, outcome_words, viewing
from dashboard.live import live
from dashboard.untrusted import markdown_text
from engine.runs.layout import WATCHED_POSITIONS, is_watched
from engine.telemetry import ProbeClaim, Snapshot

LATEST = "latest"
EXPLANATION = """
Each attention head decides, for every word it reads, **how much to look at every other word**, and brighter
squares mean more attention. A row adds up to 1 or less: a head can also look at **nothing** (when the words it
looks for are not in the claim), and that share is what the row's words leave out. At the first step each head, in
the encoder and in the decoder, starts out favouring a few words of its own, at random (as in the story); as the
model learns, each head settles on the words that help it. The story says each head becomes a specialist (medical,
dosage, cost, admin): whether that happens in this run is what these pictures show.
"""
WATCHED_EXPLANATION = f"""
Each attention head of your model decides, for every position it reads, **how much to look at every other
position**; brighter squares mean more attention, and a row adds up to 1. These are the first examples of the batch
it was training on at that step, recomputed from the inputs its attention layers were given (training itself was
left as it was); of longer sequences, the first {WATCHED_POSITIONS} positions.
"""
TOKENS_SHOWN = (
    "The axes show each example's tokens, named by the tokenizer given to `watch`; an axis of another "
    "length than the model's input (cross-attention, image patches) numbers its positions from 1."
)
POSITIONS_SHOWN = (
    "Positions are numbered from 1: Headwatch knows your tokens only if `watch` is given your tokenizer (`tokenizer=`)."
)


def claim_label(claim: ProbeClaim) -> str:
    answer = outcome_words.outcome_text(claim.label)
    return f"{' / '.join(claim.text.splitlines())}  ({answer})"  # some claims are multi-line forms


def heatmaps(claim: int, step: int | str, had_data: bool) -> None:
    snap = viewing.snapshot()
    if snap is None:
        return
    if not snap.attention:
        st.info(
            "Waiting for the first picture of the heads…"
            if snap.active
            else "Attention appears as soon as a run starts: press Train on the Train page."
        )
        return
    if not had_data:
        st.rerun()  # the selectors above were drawn before there was anything to select
    claim = min(claim, len(snap.probe) - 1)  # a new run may have fewer probe claims than the last one
    point = snap.attention[-1] if step == LATEST else min(snap.attention, key=lambda p: abs(p.step - step))
    cross = [n for n in snap.attention_names if n.endswith(".cross")]
    encoder = [n for n in snap.attention_names if n.startswith("encoder.")]
    even = 1 / len(snap.probe[claim].tokens)
    st.caption(
        f"**Peak** is a row's largest weight, averaged over the rows: for this claim, looking evenly at "
        f"every word gives {even:.2f}, looking at one word only gives 1. In cross-attention, the row "
        "**→ verdict** is where the model looks to say VALID or INVALID; **→ reason** is where it looks to "
        "answer *if this claim were invalid, why?*"
    )
    for name in [*cross, *encoder]:
        st.plotly_chart(
            attention_figures.attention_figure(snap, point, name, claim),
            key=f"attention_{name}",
            config=figures.CHART_CONFIG,
        )


def watched_heatmaps(example: int, step: int | str) -> None:
    snap = viewing.snapshot()
    if snap is None:
        return
    if not snap.attention:
        st.info(
            "No attention weights saved yet: they are saved at the first step, then at steps further and further apart."
        )
        return
    point = snap.attention[-1] if step == LATEST else min(snap.attention, key=lambda p: abs(p.step - step))
    if point.tokens_unread:
        st.warning(
            markdown_text(
                f"This step's tokens are not shown, its positions are numbered instead: {point.tokens_unread}."
            )
        )
    else:
        st.caption(TOKENS_SHOWN if point.tokens else POSITIONS_SHOWN)
    for name in point.weights:
        example_here = min(example, point.weights[name].shape[0] - 1)
        st.plotly_chart(
            attention_figures.positions_attention_figure(snap, point, name, example_here),
            key=f"attention_{name}",
            config=figures.CHART_CONFIG,
        )


def step_slider(steps: list[int], column) -> int | str:
    # A stored step can be thinned away and a new run can have other steps: fall back instead of failing.
    if st.session_state.get("attention_step") not in [*steps, LATEST]:
        st.session_state.attention_step = LATEST
    chosen = column.select_slider(
        "Training step",
        [*steps, LATEST],
        key="attention_step",
        persist_state="session",
        format_func=lambda s: "latest (follows the live run)" if s == LATEST else f"step {s:,}",
        help="Slide left to go back in time; the right end follows the run live.",
    )
    column.caption(stored_steps_text(steps))
    return chosen


def stored_steps_text(steps: list[int]) -> str:
    """The slider moves one stored step per notch, and the stored steps grow further apart: say so, with examples."""
    if len(steps) < 3:
        return f"Stored steps: {', '.join(f'{s:,}' for s in steps)}."
    shown = [steps[len(steps) * i // 4] for i in range(4)]
    return (
        f"{len(steps)} stored steps, one per notch: {', '.join(f'{s:,}' for s in shown)} … {steps[-1]:,}. "
        "They grow further apart: dense early, where the heads change fastest."
    )


def watched_page(snap: Snapshot) -> None:
    st.markdown(WATCHED_EXPLANATION)
    example, step = 0, LATEST
    if snap.attention:
        count = max(w.shape[0] for w in snap.attention[-1].weights.values())
        if st.session_state.get("attention_example") not in range(count):
            st.session_state.attention_example = 0
        left, right = st.columns([2, 3], gap="large")
        example = left.selectbox(
            "Example of the batch",
            range(count),
            format_func=lambda i: f"example {i + 1}",
            key="attention_example",
            persist_state="session",
        )
        step = step_slider([p.step for p in snap.attention], right)
    live(lambda: watched_heatmaps(example, step))


def claims_page(snap: Snapshot) -> None:
    st.markdown(EXPLANATION)
    claim, step = 0, LATEST
    if snap.probe and snap.attention:
        if st.session_state.get("attention_claim") not in range(len(snap.probe)):
            st.session_state.attention_claim = 0
        left, right = st.columns([2, 3], gap="large")
        claim = left.selectbox(
            "Claim",
            range(len(snap.probe)),
            format_func=lambda i: claim_label(snap.probe[i]),
            key="attention_claim",
            persist_state="session",
        )
        step = step_slider([p.step for p in snap.attention], right)
    live(lambda: heatmaps(claim, step, bool(snap.attention)))


st.title("Attention")
viewing.banner()
snap = viewing.snapshot()
if snap is None:
    st.stop()
if is_watched(snap.config):
    watched_page(snap)
else:
    claims_page(snap)
