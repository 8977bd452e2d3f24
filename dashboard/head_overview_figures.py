"""Pure builders of the heads at a glance: this run's heads as cards, each coloured by the reason it works for, and
what the shipped studies found over many runs of each recipe. Measurements in, a plotly figure out."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import plotly.graph_objects as go

from dashboard.figures import CLASS_COLORS
from dashboard.head_figures import figure_layout, unmeasured_figure
from dashboard.head_words import role_words
from dashboard.untrusted import plotly_text
from data.rules import REASONS
from engine.interpret.labels import head_label
from engine.interpret.ownership import HELPS, LEANS, SHARES, SPECIALIST, unit_reason
from engine.reports.reference_studies import ReferenceStudy
from engine.telemetry import HeadSpecialization

NO_REASON_COLOR = "#9e9e9e"  # a head that works for no single reason
STUDY_COLORS = ("#4c78a8", "#e45756", "#54a24b", "#b279a2")  # one per shipped study, none a reason's colour


def head_color(head: HeadSpecialization) -> str:
    """The colour of the one reason a head works for (fully, in part, or sharing it with another head), grey when it
    works for no single one."""
    if head.kind in (SPECIALIST, LEANS, HELPS) and head.reason:
        return CLASS_COLORS.get(unit_reason(head.reason), NO_REASON_COLOR)
    reasons = {unit_reason(unit) for unit in head.shared_with}
    if head.kind == SHARES and len(reasons) == 1:
        return CLASS_COLORS.get(reasons.pop(), NO_REASON_COLOR)
    return NO_REASON_COLOR  # several reasons' colours on one card would say it works for one of them


def heads_figure(heads: Sequence[HeadSpecialization], title: str) -> go.Figure:
    """The heads as cards side by side: each one's name as measured (its label) and what that means in plain
    words, coloured by the reason it works for; a thick border marks a specialist."""
    if not heads:
        return unmeasured_figure(title, "Waiting for the first measurement of the heads…")
    shapes, notes, lines = [], [], 0
    for index, head in enumerate(heads):
        color = head_color(head)
        shapes += _card_box(index, color, specialist=head.kind == SPECIALIST)
        text, count = _card_text(index, head, color)
        lines = max(lines, count)
        notes.append(
            {
                "x": index + 0.5,
                "y": 0.96,
                "xanchor": "center",
                "yanchor": "top",
                "showarrow": False,
                "text": text,
                "font": {"size": 13, "color": "#333"},
            }
        )
    notes.append(_colour_key())
    hidden = {"visible": False, "fixedrange": True}
    return go.Figure(
        layout=figure_layout(
            title,
            115 + 16 * lines,
            shapes=shapes,
            annotations=notes,
            plot_bgcolor="white",
            xaxis={**hidden, "range": [0, len(heads)]},
            yaxis={**hidden, "range": [0, 1]},
            margin={"l": 10, "r": 10, "t": 50, "b": 40},
        )
    )


def _card_box(index: int, color: str, specialist: bool) -> list[dict]:
    """The card's tint and its border, thick for a specialist."""
    box = {"type": "rect", "x0": index + 0.04, "x1": index + 0.96, "y0": 0, "y1": 1}
    return [
        {**box, "fillcolor": color, "opacity": 0.22 if specialist else 0.08, "layer": "below", "line": {"width": 0}},
        {**box, "line": {"color": color, "width": 4 if specialist else 1.5}},
    ]


def _card_text(index: int, head: HeadSpecialization, color: str) -> tuple[str, int]:
    """A head's card: its number, its label as measured, what that means in plain words; and how many lines."""
    label = textwrap.wrap(head_label(head), 22) or [" "]
    words = textwrap.wrap(f"It {role_words(head)}.", 34)
    text = (
        f"<b>Head {index + 1}</b><br> <br><span style='font-size:16px;color:{color}'><b>"
        + "<br>".join(plotly_text(line) for line in label)
        + "</b></span><br> <br><span style='font-size:12px'>"
        + "<br>".join(plotly_text(line) for line in words)
        + "</span>"
    )
    return text, 4 + len(label) + len(words)


def _colour_key() -> dict:
    """What the cards' colours and borders mean, under them."""
    key = " · ".join(f'<span style="color:{c}">■</span> {r}' for r, c in CLASS_COLORS.items() if r in REASONS)
    return {
        "x": 0,
        "y": -0.04,
        "xanchor": "left",
        "yanchor": "top",
        "showarrow": False,
        "font": {"size": 12},
        "yref": "paper",
        "xref": "paper",
        "text": f"Colour: the reason a head works for ({key}); grey: no single reason. A thick border "
        "marks a specialist.",
    }


def studies_figure(studies: Sequence[ReferenceStudy]) -> go.Figure:
    """Per shipped study (one recipe trained with many seeds): in what share of its runs that learned each reason
    got a head of its own, and in what share no head became a specialist."""
    title = "Over many runs of each recipe: how often each reason got a head of its own"
    columns = [*REASONS, "no specialist at all"]
    data = []
    for index, study in enumerate(studies):
        learned = [r for r in study.results if r.learned]
        counts = [sum(reason in r.owns for r in learned) for reason in REASONS]
        counts.append(sum(r.specialists == 0 for r in learned))
        share = [c / len(learned) if learned else 0.0 for c in counts]
        data.append(
            go.Bar(
                x=columns,
                y=share,
                name=f"{plotly_text(study.name, 30)} ({len(learned)} runs)",
                text=[f"{c} of {len(learned)}" for c in counts],
                textposition="outside",
                marker={"color": STUDY_COLORS[index % len(STUDY_COLORS)]},
                cliponaxis=False,
                hovertemplate="%{x}: %{text} runs<extra>%{fullData.name}</extra>",
            )
        )
    return go.Figure(
        data=data,
        layout=figure_layout(
            title,
            360,
            barmode="group",
            legend={"title": {"text": "recipe"}},
            yaxis={"tickformat": ".0%", "range": [0, 1.15], "title": {"text": "share of runs"}},
        ),
    )
