"""Pure builders for the head pages: specialization measurements in, a plotly figure (or a table's rows) out. No
Streamlit here, so everything is unit-tested without a server. One claim's figures are in dashboard.claim_figures, the
heads at a glance (cards, the shipped studies) in dashboard.head_overview_figures."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard.figures import HEAD_COLORS
from dashboard.step_animation import stepped_figure
from dashboard.untrusted import plotly_text
from data.rules import CLASSES, REASONS
from data.vocabulary import CATEGORIES
from engine.interpret.labels import head_label
from engine.interpret.metrics import NOTHING, shown_change
from engine.interpret.pairs import CHECKS, reason_of
from engine.task.claims_model import CROSS
from engine.telemetry import INTERVENTIONS, RESAMPLED, HeadSpecialization, SpecializationPoint

ENCODER = "encoder.0.self"
HEAD_METRICS = {
    "entropy": ("Entropy (nats): how spread out", "lower = more focused"),
    "confidence": ("Confidence: largest single weight", "Voita et al. 2019"),
    "importance": ("Importance: |dLoss / d head|", "Michel et al. 2019"),
}
MARGIN = {"l": 90, "r": 30, "t": 70, "b": 50}


def figure_layout(title: str, height: int, **extra: object) -> dict:
    return {"title": {"text": title, "font": {"size": 16}}, "height": height, "margin": MARGIN, **extra}


def unmeasured_figure(title: str, text: str) -> go.Figure:
    """A head figure with nothing to draw yet (or ever, for a run saved by an older version): its title over a note
    saying why, instead of bare axes."""
    hidden = {"visible": False}
    return go.Figure(
        layout=figure_layout(
            title,
            260,
            xaxis=hidden,
            yaxis=hidden,
            annotations=[
                {
                    "text": text,
                    "showarrow": False,
                    "x": 0.5,
                    "y": 0.5,
                    "xref": "paper",
                    "yref": "paper",
                    "font": {"size": 14, "color": "gray"},
                }
            ],
        )
    )


def _animated_heatmap(
    points: Sequence[SpecializationPoint],
    name: str,
    columns: Sequence[str],
    values: Callable[[HeadSpecialization, str], float],
    title: str,
    start: int,
    **heatmap: object,
) -> go.Figure:
    """One heatmap per measured step (heads down, `columns` across) with a step slider and a Play button."""
    n_heads = len(points[0].heads[name])
    heads = [f"Head {h + 1}" for h in range(n_heads)]

    def trace(point: SpecializationPoint) -> dict:
        specs = point.heads[name]
        z = np.array([[values(head, column) for column in columns] for head in specs], dtype=float)
        labels = np.array([[plotly_text(head_label(head))] * len(columns) for head in specs], dtype=object)
        return {
            "type": "heatmap",
            "z": z,
            "x": list(columns),
            "y": heads,
            "customdata": labels,
            "texttemplate": "%{z:.2f}",
            "xgap": 2,
            "ygap": 2,
            "hovertemplate": "%{y} (%{customdata}) · %{x}: %{z:.3f}<extra></extra>",
            **heatmap,
        }

    # the columns' names sit on top, under the title, and tilt in a narrow chart: room for both, the title first
    layout = figure_layout(
        title,
        370 + 22 * n_heads,
        yaxis={"autorange": "reversed"},
        xaxis={"side": "top"},
        margin={**MARGIN, "t": 150, "b": 30},
    )
    layout["title"] |= {"y": 0.98, "yref": "container", "yanchor": "top"}
    return stepped_figure(points, trace, layout, start)


def shares_figure(points: Sequence[SpecializationPoint], name: str = CROSS, start: int = -1) -> go.Figure:
    """Share of each head's attention (from the position that answers REASON) on each field category."""
    title = "What each head reads: share of its attention per field, from the position that answers REASON"
    points = [p for p in points if name in p.heads]
    if not points:
        return unmeasured_figure(title, "Waiting for the first measurement of the heads…")
    peak = max(max(h.shares.values()) for p in points for h in p.heads[name])
    columns = (*CATEGORIES, NOTHING) if NOTHING in points[-1].heads[name][0].shares else CATEGORIES
    return _animated_heatmap(
        points,
        name,
        columns,
        lambda head, c: head.shares.get(c, 0.0),
        title,
        start,
        colorscale="Viridis",
        zmin=0,
        zmax=max(0.2, peak),
        colorbar={"title": {"text": "share"}},
    )


def necessity_figure(points: Sequence[SpecializationPoint], name: str = CROSS, title: str | None = None) -> go.Figure:
    """Per head and check: the share of what tells a check's claims from their repaired twins that goes when the
    head sees the twin instead (activation patching): the evidence every head's name rests on."""
    title = title or (
        "What each check needs from each head: share of the evidence that goes when the head sees the "
        "claim's repaired twin"
    )
    points = [p for p in points if name in p.heads and p.heads[name][0].necessity]
    if not points:
        return unmeasured_figure(
            title,
            "Not measured yet (runs saved by older versions were measured by switching heads "
            "off: see the matrix below)",
        )
    columns = [c if reason_of(c) != "ADMIN" else f"ADMIN: {c}" for c in CHECKS]
    return _animated_heatmap(
        points,
        name,
        columns,
        lambda head, c: head.necessity.get(c.removeprefix("ADMIN: "), 0.0),
        title,
        -1,
        colorscale="Reds",
        zmin=0,
        zmax=1,
        texttemplate="%{z:.0%}",
        colorbar={"title": {"text": "needed"}, "tickformat": ".0%"},
    )


def direct_figure(point: SpecializationPoint, name: str = CROSS) -> go.Figure:
    """Per head and check, direct logit attribution on the check's invalid claims: how far the head's own output
    pushes the answer towards that check's reason (positive) or away from it, not counting what later parts of the
    model make of it."""
    title = "Each head's direct push towards the right answer, on claims that break each rule (in logits)"
    heads = point.heads.get(name, ())
    if not heads or not heads[0].direct:
        return unmeasured_figure(title, "Not measured for this run (saved by an older version)")
    columns = [c if reason_of(c) != "ADMIN" else f"ADMIN: {c}" for c in CHECKS]
    peak = max(max(abs(v) for v in h.direct.values()) for h in heads) or 1.0
    return _animated_heatmap(
        [point],
        name,
        columns,
        lambda head, c: head.direct.get(c.removeprefix("ADMIN: "), 0.0),
        title,
        -1,
        colorscale="RdBu",
        zmid=0,
        zmin=-peak,
        zmax=peak,
        texttemplate="%{z:+.1f}",
        colorbar={"title": {"text": "logits"}},
    )


def taken_away(points: Sequence[SpecializationPoint], name: str = CROSS) -> str:
    """How the newest of these records took a head away, in words: 'sees what it saw on claims of the same kind'
    (runs saved by older versions: 'gives its average output', 'is switched off')."""
    points = [p for p in points if p.heads.get(name)]
    return INTERVENTIONS[points[-1].heads[name][0].intervention if points else RESAMPLED]


def ablation_figure(points: Sequence[SpecializationPoint], name: str = CROSS, title: str | None = None) -> go.Figure:
    """Accuracy change per reason, and on valid claims, when one head is taken away as its record says (resampled
    from claims of the same class). VALID comes last: a head that clears valid claims shows only there."""
    points = [p for p in points if name in p.heads]
    title = title or (
        f"What breaks when a head {taken_away(points, name)}: change in accuracy per reason, and on valid claims"
    )
    if not points:
        return unmeasured_figure(title, "Waiting for the first measurement of the heads…")
    # Fixed range so runs compare at a glance: red = accuracy lost without this head.
    columns = (*REASONS, "VALID")
    return _animated_heatmap(
        points,
        name,
        columns,
        lambda head, c: shown_change(-head.ablation.get(c, 0.0)),
        title,
        -1,
        colorscale="RdBu",
        zmid=0,
        zmin=-1,
        zmax=1,
        texttemplate="%{z:+.0%}",
        colorbar={"title": {"text": "accuracy<br>change"}, "tickformat": "+.0%"},
    )


def answers_figure(point: SpecializationPoint, name: str = CROSS) -> go.Figure:
    """Where each class's answers go when one head is taken away: one small matrix per head, true class down,
    answer across, so a fallback (to MEDICAL, say) shows instead of hiding as an accuracy drop."""
    title = f"Where the answers go when one head {taken_away([point], name)} (rows: the right answer; columns: given)"
    heads = point.heads.get(name, ())
    if not heads or not heads[0].answers:
        return unmeasured_figure(title, "Not measured for this run (saved by an older version)")
    fig = make_subplots(
        rows=1,
        cols=len(heads),
        shared_yaxes=True,
        horizontal_spacing=0.03,
        subplot_titles=[f"Head {i + 1}: {plotly_text(head_label(h), 24)}" for i, h in enumerate(heads)],
    )
    for col, head in enumerate(heads, start=1):
        z = [[head.answers.get(true, {}).get(given, 0.0) for given in CLASSES] for true in CLASSES]
        fig.add_trace(
            go.Heatmap(
                z=z,
                x=list(CLASSES),
                y=list(CLASSES),
                zmin=0,
                zmax=1,
                colorscale="Blues",
                showscale=col == len(heads),
                texttemplate="%{z:.0%}",
                xgap=1,
                ygap=1,
                colorbar={"tickformat": ".0%"},
                hovertemplate=f"Head {col}: right answer %{{y}}, answered %{{x}}: %{{z:.0%}}<extra></extra>",
            ),
            row=1,
            col=col,
        )
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(**figure_layout(title, 360, margin={**MARGIN, "t": 90}))
    return fig


def pairs_rows(point: SpecializationPoint, name: str = CROSS) -> list[dict[str, object]]:
    """One row per pair of heads taken away together: the share of each check's evidence that goes (twins) and the
    accuracy each reason loses (resampled), for the table beside the single-head charts. Empty for runs saved
    before pairs were measured."""
    heads = point.heads.get(name, ())
    rows = []
    for index, head in enumerate(heads):
        for partner in sorted(int(j) for j in head.pair_ablation if int(j) > index):
            together, lost = head.pair_necessity.get(str(partner), {}), head.pair_ablation[str(partner)]
            rows.append(
                {
                    "Heads": f"{index + 1} + {partner + 1}",
                    **{f"needed: {c}": together.get(c) for c in CHECKS},
                    **{f"accuracy lost: {r}": lost.get(r) for r in REASONS},
                }
            )
    return rows


def head_metrics_figure(points: Sequence[SpecializationPoint], name: str = CROSS) -> go.Figure:
    """Per head over training: entropy, confidence (Voita et al. 2019), importance (Michel et al. 2019)."""
    title = "Each head over training"
    points = [p for p in points if name in p.heads]
    if not points:
        return unmeasured_figure(title, "Waiting for the first measurement of the heads…")
    fig = make_subplots(
        rows=1,
        cols=len(HEAD_METRICS),
        horizontal_spacing=0.08,
        subplot_titles=[f"{t}<br><sup>{note}</sup>" for t, note in HEAD_METRICS.values()],
    )
    steps = [p.step for p in points]
    for col, metric in enumerate(HEAD_METRICS, start=1):
        for head in range(len(points[0].heads[name])):
            values = [getattr(p.heads[name][head], metric) for p in points]
            fig.add_trace(
                go.Scatter(
                    x=steps,
                    y=values,
                    mode="lines+markers",
                    name=f"Head {head + 1}",
                    legendgroup=f"head{head}",
                    showlegend=col == 1,
                    marker={"size": 5},
                    line={"color": HEAD_COLORS[head % len(HEAD_COLORS)]},
                    hovertemplate=f"Head {head + 1} · step %{{x}}: %{{y:.3g}}<extra></extra>",
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(title_text="Training step", row=1, col=col)
    fig.update_layout(**figure_layout(title, 380, legend={"orientation": "h", "y": -0.25}, hovermode="closest"))
    fig.update_layout(margin={**MARGIN, "t": 100, "b": 80})
    return fig
