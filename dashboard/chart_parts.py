"""The parts the run's charts are built from (dashboard.figures, dashboard.attention_figures): a layout, a grid of
panels, a line, a series capped to a few hundred points, and the note an empty chart shows.

Live charts are rebuilt for every viewer every second, so these parts are plain dicts and numpy arrays that the
builders validate once in `go.Figure` (3-4x faster than make_subplots and add_trace), and every layout sets
`uirevision` so a viewer's zoom survives updates until a new run starts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

MAX_POINTS = 400  # per line; enough to see the shape, small enough to send every second


def cap(steps: Sequence[int], values: Sequence[float | None], limit: int = MAX_POINTS) -> tuple[np.ndarray, ...]:
    """At most `limit` evenly spread points, always keeping the newest, as arrays (None becomes NaN).

    Arrays rather than lists: plotly validates lists element by element and sends arrays as compact base64.
    """
    steps, values = np.asarray(steps, dtype=np.int64), np.asarray(values, dtype=np.float64)
    if len(steps) <= limit:
        return steps, values
    keep = np.unique(np.linspace(0, len(steps) - 1, limit).round().astype(int))
    return steps[keep], values[keep]


def chart_layout(title: str, revision: object, height: int, **extra: object) -> dict:
    return {
        "title": {"text": title, "font": {"size": 16}},
        "uirevision": str(revision),
        "height": height,
        "margin": {"l": 60, "r": 20, "t": 60, "b": 50},
        "legend": {"orientation": "h", "yanchor": "top", "y": -0.3, "x": 0},
        "hovermode": "x unified",
        **extra,
    }


def grey_note(text: str, y: float = 0.5) -> dict:
    return {
        "text": text,
        "showarrow": False,
        "x": 0.5,
        "y": y,
        "xref": "paper",
        "yref": "paper",
        "font": {"size": 14, "color": "gray"},
    }


def empty_chart(layout: dict, text: str) -> go.Figure:
    """An empty chart says what it waits for instead of showing bare axes."""
    hidden = {"visible": False}
    return go.Figure(layout={**layout, "annotations": [grey_note(text)], "xaxis": hidden, "yaxis": hidden})


def panel_grid(titles: Sequence[str], cols: int, gap_x: float, gap_y: float) -> dict:
    """Axes and panel titles for a grid of panels, numbered row by row as plotly's make_subplots does."""
    rows = -(-len(titles) // cols)
    width, height = (1 - gap_x * (cols - 1)) / cols, (1 - gap_y * (rows - 1)) / rows
    layout: dict = {"annotations": []}
    for index, title in enumerate(titles):
        row, col = divmod(index, cols)
        left, top = col * (width + gap_x), 1 - row * (height + gap_y)
        x, y = panel_axes(index)
        layout[f"xaxis{x[1:]}"] = {"domain": _span(left, left + width), "anchor": y}
        layout[f"yaxis{y[1:]}"] = {"domain": _span(top - height, top), "anchor": x}
        layout["annotations"].append(
            {
                "text": title,
                "x": left + width / 2,
                "y": top,
                "xref": "paper",
                "yref": "paper",
                "xanchor": "center",
                "yanchor": "bottom",
                "showarrow": False,
                "font": {"size": 13},
            }
        )
    return layout


def _span(low: float, high: float) -> list[float]:
    """Rounding errors (-5e-17) must not push a domain outside [0, 1], which plotly refuses."""
    return [min(max(round(low, 6), 0.0), 1.0), min(max(round(high, 6), 0.0), 1.0)]


def panel_axes(panel: int) -> tuple[str, str]:
    suffix = str(panel + 1) if panel else ""
    return f"x{suffix}", f"y{suffix}"


def line_trace(x: np.ndarray, y: np.ndarray, name: str, color: str, width: float = 1.5, **extra: object) -> dict:
    return {
        "type": "scatter",
        "mode": "lines",
        "x": x,
        "y": y,
        "name": name,
        "line": {"color": color, "width": width, **extra.pop("line", {})},
        "hovertemplate": "%{y:.3f}",
        **extra,
    }
