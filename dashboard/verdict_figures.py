"""The picture of where the verdict forms (engine.interpret.probes): for each reason and each field of a claim, how well
a simple probe tells that reason's claims from valid ones, after the encoder and from the word alone."""

from __future__ import annotations

import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from data.rules import REASONS
from engine.interpret.probes import FIELD_NAMES, FIELDS, SOURCES, ProbeTable, formed_at

PANEL_TITLES = {"encoder": "After the encoder (what the answer reads)", "embeddings": "The word alone (baseline)"}
FORMED_MARK = " ✓"  # beside a cell where the verdict has formed
SCALE = [[0.0, "#f7f7f7"], [0.5, "#9ecae1"], [1.0, "#08306b"]]  # from a guess (0.5) to always right (1.0)


def _cell_text(table: ProbeTable, source: str, reason: str, field: str) -> str:
    value = table.cell(source, reason, field)
    if math.isnan(value):
        return "–"
    formed = source == "encoder" and field in formed_at(table, reason)
    return f"{value:.2f}{FORMED_MARK if formed else ''}"


def verdict_figure(table: ProbeTable, so_far: bool = False) -> go.Figure:
    """Two heatmaps, reason by field, on one colour scale from a guess (0.50) to always right (1.00): the probe on
    the encoder's output, and on the word's embedding alone; ✓ where the verdict has formed. A blank cell had too
    few claims to measure."""
    figure = make_subplots(
        rows=1,
        cols=len(SOURCES),
        subplot_titles=[PANEL_TITLES[s] for s in SOURCES],
        horizontal_spacing=0.06,
        shared_yaxes=True,
    )
    names = [FIELD_NAMES[f] for f in FIELDS]
    for column, source in enumerate(SOURCES, start=1):
        values = [[None if math.isnan(v := table.cell(source, r, f)) else v for f in FIELDS] for r in REASONS]
        figure.add_trace(
            go.Heatmap(
                z=values,
                x=names,
                y=list(REASONS),
                zmin=0.5,
                zmax=1.0,
                colorscale=SCALE,
                showscale=column == 1,
                colorbar={"title": {"text": "probe<br>accuracy"}, "len": 0.9},
                text=[[_cell_text(table, source, r, f) for f in FIELDS] for r in REASONS],
                texttemplate="%{text}",
                hovertemplate="%{y} at the %{x}: %{z:.2f}<extra></extra>",
                xgap=2,
                ygap=2,
            ),
            row=1,
            col=column,
        )
    when = f"so far, at step {table.step:,}" if so_far else f"at step {table.step:,}"
    figure.update_layout(
        title={"text": f"Where each reason's verdict forms, {when}"},
        height=330,
        margin={"t": 80, "b": 60},
        uirevision="verdict",
    )
    figure.update_yaxes(autorange="reversed")
    return figure
