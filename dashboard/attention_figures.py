"""Pure builders for the Attention page: a run's recorded attention in, a plotly heatmap per head out, titled in
words a non-specialist reads ('Decoder cross-attention: the answer looking at the claim')."""

from __future__ import annotations

import re

import numpy as np
import plotly.graph_objects as go

from dashboard.chart_parts import chart_layout, panel_axes, panel_grid
from dashboard.untrusted import plotly_text
from engine.telemetry import AttentionPoint, Snapshot

TICK_LABEL = 16  # characters of a word on a heatmap's axis; the hover shows it whole


def attention_title(name: str) -> str:
    """'decoder.0.cross' -> 'Decoder cross-attention: the answer looking at the claim', for non-specialists; a
    watched model's own module names ('encoder.layers.0.self_attn') as they are."""
    stack, _, rest = name.partition(".")
    layer, _, kind = rest.partition(".")
    words = {
        ("encoder", "self"): "Encoder self-attention: claim words reading each other",
        ("decoder", "self"): "Decoder self-attention: the answer reading itself",
        ("decoder", "cross"): "Decoder cross-attention: the answer looking at the claim",
    }.get((stack, kind))
    if words is None or not layer.isdigit():
        return name
    return words if layer == "0" else f"{words} (layer {int(layer) + 1})"


def attention_short_title(name: str) -> str:
    """'Decoder cross-attention' for 'decoder.0.cross'; a watched model's own module name whole, colons and all."""
    title = attention_title(name)
    return title if title == name else title.split(":")[0]


def attention_figure(snap: Snapshot, point: AttentionPoint, name: str, claim: int) -> go.Figure:
    """One heatmap per head for one probe claim: rows look at columns, brighter means more attention."""
    tokens = list(snap.probe[claim].tokens)
    cross = name.endswith(".cross")
    rows = ["→ verdict", "→ reason"] if cross else tokens
    weights = np.asarray(point.weights[name][claim])[:, : len(rows), : len(tokens)]  # cut the padding off
    return _heads_heatmap(
        f"{plotly_text(attention_title(name))} · step {point.step:,}",
        f"{snap.run_id}:{name}:{claim}",
        weights,
        rows,
        tokens,
        short_rows=cross,
    )


def positions_attention_figure(snap: Snapshot, point: AttentionPoint, name: str, example: int) -> go.Figure:
    """A watched model's heads on one example of its batch: an axis as long as the example's saved tokens (the
    model's input) is labelled with them, any other (no tokenizer given, cross-attention, image patches) with
    positions numbered from 1."""
    weights = np.asarray(point.weights[name][example])  # (H, Tq, Tk)
    tokens = [token_label(t) for t in point.tokens[example]] if example < len(point.tokens) else []
    rows, columns = (tokens if len(tokens) == n else [f"{i + 1}" for i in range(n)] for n in weights.shape[1:])
    return _heads_heatmap(
        f"{plotly_text(name)} · step {point.step:,}",
        f"{snap.run_id}:{name}:{example}",
        weights,
        rows,
        columns,
        short_rows=False,
    )


def token_label(token: str) -> str:
    """A token as an axis shows it: line breaks, tabs and other control characters written out ('\\n'), an
    empty one as ∅."""
    return re.sub(r"[\x00-\x1f\x7f]", lambda c: repr(c[0])[1:-1], token) or "∅"


def _heads_heatmap(
    title: str, revision: str, weights: np.ndarray, rows: list[str], columns: list[str], short_rows: bool
) -> go.Figure:
    """(H, rows, columns) weights as one panel per head, two panels a row; `short_rows`: a few named rows of the
    figure's own; every other row and column label is a word of a claim (a run's probe file: untrusted)."""
    titles = [f"Head {h + 1} · peak {weights[h].max(axis=-1).mean():.2f}" for h in range(weights.shape[0])]
    layout = _panels_layout(title, revision, titles, len(rows), columns, short_rows)
    labels = [plotly_text(t, TICK_LABEL) for t in columns]  # the hover keeps the whole word
    row_labels = rows if short_rows else [plotly_text(t, TICK_LABEL) for t in rows]
    whole_columns = [plotly_text(k) for k in columns]
    hover = np.array([[[q, k] for k in whole_columns] for q in map(plotly_text, rows)], dtype=object)
    data = []
    for head in range(weights.shape[0]):
        x_axis, y_axis = panel_axes(head)
        layout[f"xaxis{x_axis[1:]}"].update(
            tickvals=list(range(len(columns))), ticktext=labels, tickangle=-60, tickfont={"size": 11}
        )
        layout[f"yaxis{y_axis[1:]}"].update(
            tickvals=list(range(len(rows))), ticktext=row_labels, autorange="reversed", tickfont={"size": 11}
        )
        data.append(_head_trace(head, weights[head], hover, x_axis, y_axis))
    return go.Figure(data=data, layout=layout)


def _panels_layout(
    title: str, revision: str, titles: list[str], heatmap_rows: int, columns: list[str], short_rows: bool
) -> dict:
    """The heads' panels, two a row, sized in pixels so long words and long claims never push a label into the
    next panel's title."""
    label_px = 6 * max(min(len(t), TICK_LABEL) for t in columns) + 12
    panel_px = 88 if short_rows else max(180, min(420, 28 * heatmap_rows))
    gap_px = 0.87 * label_px + 45  # rotated labels below a panel, then the title of the one under it
    panel_rows = -(-len(titles) // 2)
    plot_px = panel_rows * panel_px + (panel_rows - 1) * gap_px
    margin = {"l": 80 if short_rows else label_px + 20, "r": 20, "t": 90, "b": 0.87 * label_px + 20}
    return chart_layout(
        title,
        revision,
        round(plot_px + margin["t"] + margin["b"]),
        **panel_grid(titles, min(2, len(titles)), gap_x=0.12, gap_y=gap_px / plot_px),
        hovermode="closest",
        margin=margin,
        coloraxis={
            "colorscale": "Viridis",
            "cmin": 0,
            "cmax": 1,
            "colorbar": {"title": {"text": "weight"}, "len": min(1.0, 400 / plot_px)},
        },
    )


def _head_trace(head: int, weights: np.ndarray, hover: np.ndarray, x_axis: str, y_axis: str) -> dict:
    return {
        "type": "heatmap",
        "z": weights,
        "customdata": hover,
        "coloraxis": "coloraxis",
        "xaxis": x_axis,
        "yaxis": y_axis,
        "name": f"Head {head + 1}",
        "hovertemplate": "<b>%{customdata[0]}</b> looks at <b>%{customdata[1]}</b><br>"
        f"weight %{{z:.3f}}<extra>Head {head + 1}</extra>",
    }
