"""Pure builders for the run's charts: a Snapshot in, a plotly Figure out: the loss, the accuracy, a watched loop's
own metrics, Adam's memories, the optimizer race and two runs compared.

No Streamlit here, so every chart is unit-tested without a server. They are rebuilt for every viewer every second,
so they are built from dashboard.chart_parts: plain dicts, capped series and a `uirevision` per run. The attention
heatmaps are in dashboard.attention_figures.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from dashboard.attention_figures import attention_short_title
from dashboard.chart_parts import (
    MAX_POINTS,
    cap,
    chart_layout,
    empty_chart,
    grey_note,
    line_trace,
    panel_axes,
    panel_grid,
)
from dashboard.untrusted import plotly_text
from engine.runs.layout import is_watched
from engine.telemetry import OPTIM_MEASURES, Snapshot

CHART_CONFIG = {"displaylogo": False}  # plotly's modebar, minus the link to plotly's website
HEAD_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
# one colour per outcome on every page; none of them a head's, a field's or another outcome's shade
CLASS_COLORS = {"VALID": "#2ca02c", "MEDICAL": "#d62728", "DOSAGE": "#9467bd", "COST": "#ff7f0e", "ADMIN": "#17becf"}
OPTIMIZER_NAMES = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "sgd-momentum": "SGD + momentum"}

_MEMORY_TITLES = {  # in the seed story's words
    "mean_abs_m": "Momentum: which direction am I usually going (mean |m|)",
    "mean_sqrt_v": "Adaptive scale: how big are my mistakes usually (mean √v)",
    "mean_abs_step": "Effective step: how far each weight really moves (bias-corrected)",
    "grad_norm": "Gradient: how hard this batch pushes the head (gradient norm)",
}
# metric -> (chart title, y-axis label)
MEMORY_METRICS = {metric: (title, OPTIM_MEASURES[metric][1]) for metric, title in _MEMORY_TITLES.items()}


def optimizer_name(config: dict) -> str:
    """The optimizer as people write it; a watched loop's own (RMSprop, say) by its class name."""
    optimizer = config.get("optimizer", "")
    return OPTIMIZER_NAMES.get(optimizer) or str(config.get("optimizer_name") or optimizer or "?")


def steps_axis(snap: Snapshot) -> dict:
    """The x axis of every chart over a run's steps: the whole run from the start, so two charts of one run line up
    (a watched loop never says how many steps it takes: its axis grows)."""
    axis = {"title": {"text": "Training step"}, "tickformat": ","}
    return axis | (
        {"range": [0, snap.total_steps]}
        if snap.total_steps and not is_watched(snap.config)
        else {"rangemode": "tozero"}
    )


LOG_HELP = (
    "A loss falls by orders of magnitude: on a log scale its late steps are not a flat line near zero, and "
    "a rise or a swing shows at every level."
)


def loss_axis(log: bool) -> dict:
    """A loss spans orders of magnitude as it falls: on a log scale its last thousand steps are not a flat line."""
    if log:
        return {"title": {"text": "Loss (log scale)"}, "type": "log", "exponentformat": "none", "tickformat": ".2~g"}
    return {"title": {"text": "Loss"}, "rangemode": "tozero"}


def loss_figure(snap: Snapshot, log: bool = False) -> go.Figure:
    """Per-step training loss (noisy: each step sees a new batch) and held-out loss (the same unseen claims)."""
    revision = f"{snap.run_id}:log" if log else snap.run_id  # a new scale drops the old one's zoom
    layout = chart_layout(
        "Loss: how wrong the model is (lower is better)", revision, 380, xaxis=steps_axis(snap), yaxis=loss_axis(log)
    )
    if not snap.loss.steps:
        return empty_chart(layout, "Waiting for the first training step…")
    data = [line_trace(*cap(snap.loss.steps, snap.loss.values), "Training batches", "#1f77b4", 1)]
    if snap.evals:
        x, y = cap([e.step for e in snap.evals], [e.heldout_loss for e in snap.evals])
        data.append(
            line_trace(
                x, y, "Held-out claims (never trained on)", "#d62728", 2.5, mode="lines+markers", marker={"size": 5}
            )
        )
    return go.Figure(data=data, layout=layout)


COMPARED = (("A", "#1f77b4"), ("B", "#d62728"))


def compare_figure(a: Snapshot, b: Snapshot) -> go.Figure:
    """Two runs on one set of axes: held-out accuracy (thick) and training loss (thin, right axis); the loss alone
    when neither run measured held-out claims (someone's own models)."""
    if not (a.evals or b.evals):
        return _compared_losses(a, b)
    layout = chart_layout(
        "Runs A and B: held-out accuracy and training loss",
        (a.run_id, b.run_id),
        420,
        xaxis={"title": {"text": "Training step"}, "rangemode": "tozero"},
        yaxis={"title": {"text": "Held-out accuracy"}, "range": [0, 1.02], "tickformat": ".0%"},
        yaxis2={
            **loss_axis(log=True),
            "title": {"text": "Training loss (log scale)"},
            "overlaying": "y",
            "side": "right",
            "showgrid": False,
        },
    )
    data = []
    for snap, (letter, color) in zip((a, b), COMPARED, strict=True):
        if snap.evals:
            data.append(
                line_trace(
                    *cap([e.step for e in snap.evals], [e.heldout_accuracy for e in snap.evals]),
                    f"{letter}: held-out accuracy",
                    color,
                    3,
                    hovertemplate="%{y:.1%}",
                )
            )
        if snap.loss.steps:
            data.append(
                line_trace(
                    *cap(snap.loss.steps, snap.loss.values),
                    f"{letter}: training loss",
                    color,
                    1,
                    yaxis="y2",
                    opacity=0.5,
                )
            )
    if not data:
        return empty_chart(layout, "Neither run has recorded a step")
    return go.Figure(data=data, layout=layout)


def _compared_losses(a: Snapshot, b: Snapshot) -> go.Figure:
    layout = chart_layout(
        "Runs A and B: training loss",
        (a.run_id, b.run_id),
        420,
        xaxis={"title": {"text": "Training step"}, "rangemode": "tozero"},
        yaxis={**loss_axis(log=True), "title": {"text": "Training loss (log scale)"}},
    )
    data = [
        line_trace(*cap(snap.loss.steps, snap.loss.values), f"{letter}: training loss", color, 2)
        for snap, (letter, color) in zip((a, b), COMPARED, strict=True)
        if snap.loss.steps
    ]
    return go.Figure(data=data, layout=layout) if data else empty_chart(layout, "Neither run has recorded a step")


def metrics_figure(snap: Snapshot) -> go.Figure:
    """The numbers a watched training loop reported beside its loss (engine.recording.watch), a line each."""
    layout = chart_layout(
        "Your metrics", snap.run_id, 380, margin={"l": 60, "r": 20, "t": 80, "b": 50}, xaxis=steps_axis(snap)
    )
    names = list(dict.fromkeys(name for point in snap.metrics for name in point.values))
    layout["title"]["subtitle"] = {"text": f"As your training loop reported them: {plotly_text(', '.join(names))}"}
    data = []
    for index, name in enumerate(names):
        points = [p for p in snap.metrics if name in p.values]
        data.append(
            line_trace(
                *cap([p.step for p in points], [p.values[name] for p in points]),
                plotly_text(name),
                HEAD_COLORS[index % len(HEAD_COLORS)],
                2,
            )
        )
    return go.Figure(data=data, layout=layout)


def accuracy_figure(snap: Snapshot) -> go.Figure:
    """Held-out accuracy overall (thick) and per outcome (thin), plus training accuracy for comparison."""
    layout = chart_layout(
        "Accuracy: share of claims audited correctly",
        snap.run_id,
        380,
        margin={"l": 60, "r": 20, "t": 80, "b": 50},
        xaxis=steps_axis(snap),
        yaxis={"title": {"text": "Accuracy"}, "range": [0, 1.02], "tickformat": ".0%"},
    )
    if not snap.evals:
        return empty_chart(
            layout,
            "Waiting for the first evaluation…"
            if snap.active or snap.status == "idle"
            else "This run recorded no evaluation on held-out claims",
        )
    steps = [e.step for e in snap.evals]
    percent = {"hovertemplate": "%{y:.0%}"}
    data = [
        line_trace(*cap(steps, [e.heldout_accuracy for e in snap.evals]), "All, held-out", "#222222", 3, **percent),
        line_trace(
            *cap(steps, [e.train_accuracy for e in snap.evals]),
            "All, training",
            "#222222",
            1.5,
            line={"dash": "dot"},
            **percent,
        ),
    ]
    for cls, color in CLASS_COLORS.items():
        data.append(line_trace(*cap(steps, [e.heldout_per_class.get(cls) for e in snap.evals]), cls, color, **percent))
    layout["title"]["subtitle"] = {"text": "Coloured lines: held-out claims whose true answer is that one"}
    return go.Figure(data=data, layout=layout)


def memory_figure(snap: Snapshot, metric: str) -> go.Figure:
    """One optimizer statistic over time: a panel per attention layer, a line per head (same colour = same head)."""
    title, y_label = MEMORY_METRICS[metric]
    names = [n for n in snap.attention_names if any(n in p.heads for p in snap.optim)]
    if not names:
        return empty_chart(chart_layout(title, snap.run_id, 300), "Waiting for the first training step…")
    layout = chart_layout(
        title,
        snap.run_id,
        330,
        **panel_grid([plotly_text(attention_short_title(n)) for n in names], cols=len(names), gap_x=0.06, gap_y=0),
    )
    data, recorded = [], False
    for panel, name in enumerate(names):
        x_axis, y_axis = panel_axes(panel)
        layout[f"xaxis{x_axis[1:]}"]["title"] = {"text": "Training step"}
        layout[f"yaxis{y_axis[1:]}"].update(type="log", exponentformat="power", nticks=4)
        points = [p for p in snap.optim if name in p.heads]
        for head in range(snap.n_heads):
            # twelve lines a chart, four charts a page: half the usual points
            x, y = cap(
                [p.step for p in points], [_stat(p.heads[name], head, metric) for p in points], limit=MAX_POINTS // 2
            )
            recorded = recorded or not np.isnan(y).all()
            data.append(
                line_trace(
                    x,
                    y,
                    f"Head {head + 1}",
                    HEAD_COLORS[head % len(HEAD_COLORS)],
                    xaxis=x_axis,
                    yaxis=y_axis,
                    legendgroup=f"head{head}",
                    showlegend=panel == 0,
                    hovertemplate="%{y:.3g}",
                )
            )
    layout["yaxis"]["title"] = {"text": y_label}
    if not recorded:
        layout["annotations"].append(grey_note(_no_memory(snap.config)))
    return go.Figure(data=data, layout=layout)


def _no_memory(config: dict) -> str:
    name = plotly_text(optimizer_name(config))
    if config.get("optimizer") in OPTIMIZER_NAMES:
        return f"{name} keeps no such memory: nothing to show"
    return f"Headwatch reads these memories from Adam and AdamW only; {name} keeps its own, not shown here"


def _stat(heads: tuple, head: int, metric: str) -> float | None:
    return getattr(heads[head], metric) if head < len(heads) else None


def race_figure(main: Snapshot, race: Snapshot, log: bool = False) -> go.Figure:
    """Both optimizers' losses on one chart: faint per-batch lines, bold held-out lines."""
    layout = chart_layout(
        "Race: loss of the same model and data under two optimizers (lower is better)",
        f"{main.run_id}:{race.run_id}:{log}",
        400,
        xaxis=steps_axis(main),
        yaxis=loss_axis(log),
    )
    if not race.loss.steps:
        return empty_chart(layout, "Waiting for the race's first step…")
    data = []
    for snap, color in ((main, "#1f77b4"), (race, "#ff7f0e")):
        label = plotly_text(f"{optimizer_name(snap.config)} (lr {snap.config.get('lr', '?')})")
        data.append(
            line_trace(*cap(snap.loss.steps, snap.loss.values), f"{label}: training batches", color, 1, opacity=0.5)
        )
        if snap.evals:
            x, y = cap([e.step for e in snap.evals], [e.heldout_loss for e in snap.evals])
            data.append(line_trace(x, y, f"{label}: held-out", color, 2.5, mode="lines+markers", marker={"size": 4}))
    return go.Figure(data=data, layout=layout)
