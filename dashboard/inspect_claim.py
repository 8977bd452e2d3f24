"""Inspect: paste a claim; see the verdict, what each head looked at, what taking each head away changes (it sees
what it saw on claims of the same kind), and what-if edits of its dose, amount, age or sex."""

import hashlib
import math
import time

import streamlit as st

from dashboard import attention_figures, claim_figures, figures, outcome_words, viewing, what_if
from dashboard.engine_resource import get_engine
from dashboard.live import live, shared_figure
from dashboard.summaries import duration
from dashboard.untrusted import markdown_text
from data.rules import CANNOT_CHECK
from engine.interpret.labels import head_label
from engine.interpret.prediction import Prediction
from engine.task.dataset import EXAMPLE_CLAIMS
from engine.telemetry import Snapshot

LIVE = "live"
EXPLANATION = """
Paste an insurance claim in your own words, or start from an example. The model answers VALID, or INVALID with a
reason; the **rules checker** (hand-written rules, the baseline) answers beside it. Below: what each attention head
looked at in *this* claim, and what the model answers **without** that head: the head sees, in turn, what it saw on a
few fixed claims of the kind the model says this one is, and the answers are averaged (the same test the
Specialization page runs on every head).
"""


def choose_model() -> None:
    chosen = st.session_state.inspect_model
    viewing.back_to_live() if chosen == LIVE else viewing.open_run(chosen)


def use_example() -> None:
    if st.session_state.inspect_example:
        st.session_state.claim_text = st.session_state.inspect_example


def edited() -> None:
    """An edited claim is no longer the example it started from: the picker says so."""
    if st.session_state.get("inspect_example") != st.session_state.claim_text:
        st.session_state.inspect_example = None


def answer(verdict: str | None, reason: str | None) -> str:
    return outcome_words.verdict_text(verdict, reason)


def answered(p: Prediction) -> str:
    """The verdict and how sure, or that the claim cannot be judged."""
    return outcome_words.CANNOT_JUDGE if p.refusal else f"{answer(p.verdict, p.reason)} ({p.confidence:.0%})"


def lowered(sentence: str) -> str:
    """A sentence to follow a semicolon: its first letter in lower case."""
    return sentence[:1].lower() + sentence[1:]


def rules_text(p: Prediction) -> str:
    """What the rules checker decided, and on which rule."""
    if p.rules is None and p.rule_findings:
        return (
            "The claim breaks rules for several reasons, so the rules checker gives no single answer: "
            + "; ".join(p.rule_findings)
            + "."
        )
    if p.rules is None:
        return "The rules checker cannot read this claim's fields."
    if p.rules[0] == CANNOT_CHECK:
        return (
            "The rules checker cannot check this claim: its answer would rest on a part of the claim that was not read."
        )
    if not p.rule_findings:
        return "The rules checker finds no rule broken by the fields it read, so it says VALID."
    return (
        f"The rules checker says {answer(*p.rules)}, because "
        + "; ".join(finding.partition(": ")[2] for finding in p.rule_findings)
        + "."
    )


def show_reading(p: Prediction) -> None:
    """What the claim was read as, word by word, and what was not read and why."""
    reading = p.reading
    st.markdown(
        f"**What Headwatch read:** {reading.words_read} of the claim's {reading.words} words "
        f"({reading.share_read:.0%})."
    )
    for note in reading.notes():
        st.info(markdown_text(note[:1].upper() + note[1:] + "."))  # it quotes the pasted words
    rows = sorted(
        [
            *((t.start, {"Words": t.surface, "Read as": t.field, "Meaning": t.meaning}) for t in reading.read),
            *((u.start, {"Words": u.surface, "Read as": "not read", "Meaning": u.said()}) for u in reading.unread),
        ],
        key=lambda row: row[0],
    )
    st.dataframe([row for _, row in rows], hide_index=True, key="reading")


def line_answer(line: Prediction) -> str:
    return outcome_words.CANNOT_JUDGE if line.refusal else f"{answer(line.verdict, line.reason)}"


def show_lines(p: Prediction) -> None:
    """A claim of several billed items: each service line's answer, and the claim's as the worst line's."""
    if not p.lines:
        return
    said = outcome_words.CANNOT_JUDGE if p.refusal else answer(p.verdict, p.reason)
    st.markdown(
        f"**This claim bills {len(p.lines)} items: each service line is judged as a claim of its own** "
        "(the item, its numbers, and what the lines share: patient, diagnosis, specialty, place). The "
        f"claim's verdict is its worst line's: **{said}**."
    )
    st.dataframe(
        [
            {
                "Line": number,
                "Service line": line.text,
                "Verdict": line_answer(line),
                "Confidence": None if line.refusal or line.confidence is None else round(line.confidence, 4),
                "Rules checker": answer(*(line.rules or (None, None))),
                "Cannot judge": line.refusal.sentence() if line.refusal else "",
            }
            for number, line in enumerate(p.lines, 1)
        ],
        hide_index=True,
        key="service_lines",
        column_config={"Confidence": st.column_config.NumberColumn(format="percent")},
    )
    if p.lines_note:
        st.info(markdown_text(p.lines_note[:1].upper() + p.lines_note[1:] + "."))


def show_verdict(p: Prediction) -> None:
    """The verdict, reason and confidence beside the rules checker's answer, and why a verdict is not given."""
    verdict, reason, confidence, rules = st.columns(4)
    if p.refusal is None:
        verdict.metric("Verdict", p.verdict)
        reason.metric("Reason", p.reason, help="NONE for a valid claim")
        confidence.metric("Confidence", f"{p.confidence:.0%}", help="The probability of this exact answer.")
    else:
        verdict.metric(
            "Verdict",
            outcome_words.CANNOT_JUDGE.upper(),
            help="The model's answer would rest on words Headwatch did not read.",
        )
        reason.metric("Reason", "—")
        confidence.metric("Confidence", "—")
    rules.metric(
        "Rules checker (baseline)",
        answer(*(p.rules or (None, None))),
        help="Hand-written rules applied to the fields they recognise: what the model is compared with.",
    )
    if p.refusal is not None and p.lines:
        st.warning(
            f"**{markdown_text(p.refusal.sentence())}** No line is INVALID, so the claim cannot be judged as a "
            "whole; each line's answer is in the table below.",
            icon="⚠️",
        )
    elif p.refusal is not None:
        st.warning(
            f"**{markdown_text(p.refusal.sentence())}** The model's own answer, {answer(p.verdict, p.reason)} "
            f"({p.confidence:.0%}), is in the chart below, but it is no verdict: the model never read those "
            "words.",
            icon="⚠️",
        )


def show_answer_notes(p: Prediction) -> None:
    """Why the answer wins over a likelier outcome, where the rules checker disagrees, and the claim's warnings."""
    top = max(p.probabilities, key=p.probabilities.get)
    if top != p.outcome:
        sure = p.probabilities["VALID"] if p.verdict == "VALID" else 1 - p.probabilities["VALID"]
        st.caption(
            f"The model answers in two steps, as it was trained: VALID or INVALID first (here {p.verdict}, "
            f"{sure:.0%}), then the reason. That is why this answer wins although "
            f"{outcome_words.outcome_text(top)} alone is more likely ({p.probabilities[top]:.0%})."
        )
    rules_said = rules_text(p)
    if p.refusal is None and p.rules and p.rules[0] != CANNOT_CHECK and answer(*p.rules) != answer(p.verdict, p.reason):
        st.warning(
            f"**The model and the rules checker disagree on this claim.** The model says "
            f"{answer(p.verdict, p.reason)} ({p.confidence:.0%} sure); {lowered(rules_said)} "
            "Read the model's answer with care.",
            icon="⚠️",
        )
    else:
        st.caption(rules_said)
    for warning in p.warnings:
        st.warning(f"Check this claim: {warning}.")
    if p.truncated:
        st.warning("The claim is long: only its first words were read.")


def show_claim_figures(p: Prediction, labels: list[str], model: tuple) -> None:
    """The claim's tokens, the confidence in each outcome, the answer without each head, and what each head looks
    at."""
    st.html(claim_figures.token_chips_html(p.tokens) + claim_figures.category_legend_html())
    figured, p = p, p.figured  # the figures are those of the claim, or of its first line the model answered
    if p is not figured:
        number = figured.lines.index(p) + 1
        st.markdown(
            f"**The figures below are line {number}'s** ('{markdown_text(p.text)}'), judged as a claim of "
            "its own with what the lines share; the other lines' answers are in the table above."
        )
    left, right = st.columns([2, 3], gap="large")
    left.plotly_chart(claim_figures.probabilities_figure(p), key="probabilities", config=figures.CHART_CONFIG)
    n_heads = len(next(iter(p.ablation.values()), ()))
    rows = [
        {
            "Head": f"Head {h + 1}",
            **{
                attention_figures.attention_short_title(name): (
                    "same answer" if outcomes[h] == p.outcome else outcome_words.outcome_text(outcomes[h])
                )
                for name, outcomes in p.ablation.items()
            },
        }
        for h in range(n_heads)
    ]
    left.markdown("**Without one head (it sees what it saw on claims of the same kind), the model's answer becomes…**")
    left.dataframe(rows, hide_index=True)
    # the same weights and claim give the same heatmaps: built once for every viewer while the model does not change
    key = (model, p.step, p.text, tuple(labels))
    cross = shared_figure("inspect.cross", key, lambda: claim_figures.claim_cross_figure(p, labels), max_age_s=5.0)
    encoder = shared_figure("inspect.encoder", key, lambda: claim_figures.claim_encoder_figure(p), max_age_s=5.0)
    right.plotly_chart(cross, key="claim_cross", config=figures.CHART_CONFIG)
    st.plotly_chart(encoder, key="claim_encoder", config=figures.CHART_CONFIG)


def show_prediction(p: Prediction, labels: list[str], model: tuple) -> None:
    show_verdict(p)
    show_lines(p)
    show_reading(p)
    show_answer_notes(p)
    show_claim_figures(p, labels, model)


MAX_WHAT_IF_FIELDS = 8


def what_if_inputs(text: str, p: Prediction) -> dict[int, float | str]:
    fields = what_if.editable_fields(p.tokens)
    if len(fields) > MAX_WHAT_IF_FIELDS:
        st.caption(
            f"This claim has {len(fields)} values that could change: the first {MAX_WHAT_IF_FIELDS} are offered."
        )
        fields = fields[:MAX_WHAT_IF_FIELDS]
    digest = hashlib.sha1(text.encode()).hexdigest()[:10]  # a new claim starts from its own values
    changes: dict[int, float | str] = {}
    for column, field in zip(st.columns(min(4, len(fields))) * len(fields), fields, strict=False):
        key = f"what_if_{digest}_{field.index}"
        label = f"{field.category.capitalize()} (was '{field.surface}')"
        if field.category == "sex":
            changes[field.index] = column.radio(
                label,
                what_if.SEXES,
                index=what_if.SEXES.index(field.value),
                key=key,
                horizontal=True,
                format_func={"M": "male", "F": "female"}.get,
            )
        elif field.category == "age":
            changes[field.index] = float(column.number_input(label, value=round(field.value), step=1, key=key))
        else:
            step = float(10 ** max(0, math.floor(math.log10(abs(field.value) or 1)) - 1))
            changes[field.index] = column.number_input(
                f"{label}, in {what_if.UNITS[field.category]}", value=field.value, step=step, format="%.2f", key=key
            )
    return changes


def show_what_if(text: str, p: Prediction, run_id: str | None, labels: list[str]) -> None:
    st.subheader("What if?")
    if not what_if.editable_fields(p.tokens):
        st.caption("This claim has no dose, amount, age or sex to change: add e.g. 'aged 60, female' or '$40'.")
        return
    changed = what_if.rewrite(text, p.tokens, what_if_inputs(text, p))
    if changed == text:
        st.caption("Change a value above to see the verdict and the attention move.")
        return
    q = get_engine().predict(changed, run_id)
    st.markdown("**The changed claim:**")
    st.code(changed, language=None, wrap_lines=True)
    if q.error:
        st.warning(q.error)
        return
    for warning in q.warnings:
        st.warning(f"Check this claim: {warning}.")
    if q.refusal is not None:
        st.warning(markdown_text(q.refusal.sentence()))
    before, after = answered(p), answered(q)
    # coloured as the new verdict: passed green, else amber
    if outcome_words.said_text(q) != outcome_words.said_text(p):
        (st.success if q.verdict == "VALID" else st.warning)(f"The verdict moved: {before} → **{after}**.")
    elif q.refusal is None:
        st.info(
            f"The verdict stayed {answer(q.verdict, q.reason)}; confidence {p.confidence:.0%} → {q.confidence:.0%}."
        )
    else:
        st.info(f"The verdict stayed {outcome_words.CANNOT_JUDGE}.")
    st.caption(f"For the changed claim: {lowered(rules_text(q))}")
    chart, cross = st.columns([2, 3], gap="large")
    chart.plotly_chart(
        claim_figures.probabilities_figure(p, q), key="what_if_probabilities", config=figures.CHART_CONFIG
    )
    cross.plotly_chart(
        claim_figures.claim_cross_figure(q.figured, labels), key="what_if_cross", config=figures.CHART_CONFIG
    )


def preparing_text(snap: Snapshot, now: float) -> str:
    """What Inspect says while the live run is still making its claims and its model."""
    waited = f" for {duration(now - snap.began)}" if snap.began is not None else ""
    return (
        f"The run you started has been preparing its claims and its model{waited}: this takes a few seconds "
        "(about 5 s the first time a recipe runs on this machine, under a second after that). Its model answers "
        "here from its first training step on; this page updates by itself."
    )


def analysis(text: str, run_id: str | None) -> None:
    live_snap = get_engine().snapshot()
    if run_id is None and live_snap.status == "preparing":
        st.info(preparing_text(live_snap, time.time()))
        return
    p = get_engine().predict(text, run_id)
    if p.error:
        st.warning(p.error)
        if p.tokens:
            st.html(claim_figures.token_chips_html(p.tokens))
        if p.reading is not None:
            show_reading(p)
        return
    snap = viewing.snapshot()
    measured = viewing.measurement(snap) if snap is not None else None
    labels = [head_label(h) for h in measured.cross] if measured else []
    st.caption(f"Answered by the {'saved run ' + markdown_text(run_id) if run_id else 'live run'} at step {p.step:,}.")
    show_prediction(p, labels, (run_id, snap and snap.run_id))
    show_what_if(text, p, run_id, labels)


engine = get_engine()
st.title("Inspect a claim")
st.markdown(EXPLANATION)
run_id = viewing.banner()
viewing.claims_only("Inspect")
saved = [r.run_id for r in engine.list_runs() if r.problem is None]
st.session_state.inspect_model = run_id or LIVE
models = [LIVE, *saved] if run_id in (None, *saved) else [LIVE, run_id, *saved]
model, example = st.columns(2)
model.selectbox(
    "Model",
    models,
    key="inspect_model",
    on_change=choose_model,
    format_func=lambda m: "The live run (its current weights)" if m == LIVE else f"Saved run {m}",
)
example.selectbox(
    "Start from an example",
    EXAMPLE_CLAIMS,
    index=None,
    key="inspect_example",
    on_change=use_example,
    placeholder="Choose an example…",
)
st.session_state.setdefault("claim_text", EXAMPLE_CLAIMS[0])
text = st.text_area("Claim", key="claim_text", height=80, persist_state="session", on_change=edited)
if run_id:
    analysis(text, run_id)
else:
    live(lambda: analysis(text, None))
