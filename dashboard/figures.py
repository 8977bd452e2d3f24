"""Pure figure builders: a Snapshot in, a plotly Figure out.

No Streamlit here, so every chart is unit-tested without a server. Live charts are rebuilt for every viewer every
second, so each builder writes plain dicts and numpy arrays and validates them once in `go.Figure` (3-4x faster
than make_subplots and add_trace), caps the points it sends, and sets `uirevision` so a viewer's zoom survives
updates until a new run starts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from dashboard.untrusted import plotly_text
from engine.runs.layout import is_watched
from engine.telemetry import OPTIM_MEASURES, AttentionPoint, Snapshot

CHART_CONFIG = {"displaylogo": False}  # plotly's modebar, minus the link to plotly's website
MAX_POINTS = 400  # per line; enough to see the shape, small enough to send every second
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


def cap(steps: Sequence[int], values: Sequence[float | None], limit: int = MAX_POINTS) -> tuple[np.ndarray, ...]:
    """At most `limit` evenly spread points, always keeping the newest, as arrays (None becomes NaN).

    Arrays rather than lists: plotly validates lists element by element and sends arrays as compact base64.
    """
    steps, values = np.asarray(steps, dtype=np.int64), np.asarray(values, dtype=np.float64)
    if len(steps) <= limit:
        return steps, values
    keep = np.unique(np.linspace(0, len(steps) - 1, limit).round().astype(int))
    return steps[keep], values[keep]


def optimizer_name(config: dict) -> str:
    """The optimizer as people write it; a watched loop's own (RMSprop, say) by its class name."""
    optimizer = config.get("optimizer", "")
    return OPTIMIZER_NAMES.get(optimizer) or str(config.get("optimizer_name") or optimizer or "?")


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


def _layout(title: str, revision: object, height: int, **extra: object) -> dict:
    return {
        "title": {"text": title, "font": {"size": 16}},
        "uirevision": str(revision),
        "height": height,
        "margin": {"l": 60, "r": 20, "t": 60, "b": 50},
        "legend": {"orientation": "h", "yanchor": "top", "y": -0.3, "x": 0},
        "hovermode": "x unified",
        **extra,
    }


def _note(text: str, y: float = 0.5) -> dict:
    return {
        "text": text,
        "showarrow": False,
        "x": 0.5,
        "y": y,
        "xref": "paper",
        "yref": "paper",
        "font": {"size": 14, "color": "gray"},
    }


def _waiting(layout: dict, text: str) -> go.Figure:
    """An empty chart says what it waits for instead of showing bare axes."""
    hidden = {"visible": False}
    return go.Figure(layout={**layout, "annotations": [_note(text)], "xaxis": hidden, "yaxis": hidden})


def _grid(titles: Sequence[str], cols: int, gap_x: float, gap_y: float) -> dict:
    """Axes and panel titles for a grid of panels, numbered row by row as plotly's make_subplots does."""
    rows = -(-len(titles) // cols)
    width, height = (1 - gap_x * (cols - 1)) / cols, (1 - gap_y * (rows - 1)) / rows
    layout: dict = {"annotations": []}
    for index, title in enumerate(titles):
        row, col = divmod(index, cols)
        left, top = col * (width + gap_x), 1 - row * (height + gap_y)
        x, y = _axes(index)
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


def _axes(panel: int) -> tuple[str, str]:
    suffix = str(panel + 1) if panel else ""
    return f"x{suffix}", f"y{suffix}"


def _line(x: np.ndarray, y: np.ndarray, name: str, color: str, width: float = 1.5, **extra: object) -> dict:
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
    layout = _layout(
        "Loss: how wrong the model is (lower is better)", revision, 380, xaxis=steps_axis(snap), yaxis=loss_axis(log)
    )
    if not snap.loss.steps:
        return _waiting(layout, "Waiting for the first training step…")
    data = [_line(*cap(snap.loss.steps, snap.loss.values), "Training batches", "#1f77b4", 1)]
    if snap.evals:
        x, y = cap([e.step for e in snap.evals], [e.heldout_loss for e in snap.evals])
        data.append(
            _line(x, y, "Held-out claims (never trained on)", "#d62728", 2.5, mode="lines+markers", marker={"size": 5})
        )
    return go.Figure(data=data, layout=layout)


COMPARED = (("A", "#1f77b4"), ("B", "#d62728"))


def compare_figure(a: Snapshot, b: Snapshot) -> go.Figure:
    """Two runs on one set of axes: held-out accuracy (thick) and training loss (thin, right axis); the loss alone
    when neither run measured held-out claims (someone's own models)."""
    if not (a.evals or b.evals):
        return _compared_losses(a, b)
    layout = _layout(
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
                _line(
                    *cap([e.step for e in snap.evals], [e.heldout_accuracy for e in snap.evals]),
                    f"{letter}: held-out accuracy",
                    color,
                    3,
                    hovertemplate="%{y:.1%}",
                )
            )
        if snap.loss.steps:
            data.append(
                _line(
                    *cap(snap.loss.steps, snap.loss.values),
                    f"{letter}: training loss",
                    color,
                    1,
                    yaxis="y2",
                    opacity=0.5,
                )
            )
    if not data:
        return _waiting(layout, "Neither run has recorded a step")
    return go.Figure(data=data, layout=layout)


def _compared_losses(a: Snapshot, b: Snapshot) -> go.Figure:
    layout = _layout(
        "Runs A and B: training loss",
        (a.run_id, b.run_id),
        420,
        xaxis={"title": {"text": "Training step"}, "rangemode": "tozero"},
        yaxis={**loss_axis(log=True), "title": {"text": "Training loss (log scale)"}},
    )
    data = [
        _line(*cap(snap.loss.steps, snap.loss.values), f"{letter}: training loss", color, 2)
        for snap, (letter, color) in zip((a, b), COMPARED, strict=True)
        if snap.loss.steps
    ]
    return go.Figure(data=data, layout=layout) if data else _waiting(layout, "Neither run has recorded a step")


def metrics_figure(snap: Snapshot) -> go.Figure:
    """The numbers a watched training loop reported beside its loss (engine.recording.watch), a line each."""
    layout = _layout(
        "Your metrics", snap.run_id, 380, margin={"l": 60, "r": 20, "t": 80, "b": 50}, xaxis=steps_axis(snap)
    )
    names = list(dict.fromkeys(name for point in snap.metrics for name in point.values))
    layout["title"]["subtitle"] = {"text": f"As your training loop reported them: {plotly_text(', '.join(names))}"}
    data = []
    for index, name in enumerate(names):
        points = [p for p in snap.metrics if name in p.values]
        data.append(
            _line(
                *cap([p.step for p in points], [p.values[name] for p in points]),
                plotly_text(name),
                HEAD_COLORS[index % len(HEAD_COLORS)],
                2,
            )
        )
    return go.Figure(data=data, layout=layout)


def accuracy_figure(snap: Snapshot) -> go.Figure:
    """Held-out accuracy overall (thick) and per outcome (thin), plus training accuracy for comparison."""
    layout = _layout(
        "Accuracy: share of claims audited correctly",
        snap.run_id,
        380,
        margin={"l": 60, "r": 20, "t": 80, "b": 50},
        xaxis=steps_axis(snap),
        yaxis={"title": {"text": "Accuracy"}, "range": [0, 1.02], "tickformat": ".0%"},
    )
    if not snap.evals:
        return _waiting(
            layout,
            "Waiting for the first evaluation…"
            if snap.active or snap.status == "idle"
            else "This run recorded no evaluation on held-out claims",
        )
    steps = [e.step for e in snap.evals]
    percent = {"hovertemplate": "%{y:.0%}"}
    data = [
        _line(*cap(steps, [e.heldout_accuracy for e in snap.evals]), "All, held-out", "#222222", 3, **percent),
        _line(
            *cap(steps, [e.train_accuracy for e in snap.evals]),
            "All, training",
            "#222222",
            1.5,
            line={"dash": "dot"},
            **percent,
        ),
    ]
    for cls, color in CLASS_COLORS.items():
        data.append(_line(*cap(steps, [e.heldout_per_class.get(cls) for e in snap.evals]), cls, color, **percent))
    layout["title"]["subtitle"] = {"text": "Coloured lines: held-out claims whose true answer is that one"}
    return go.Figure(data=data, layout=layout)


def memory_figure(snap: Snapshot, metric: str) -> go.Figure:
    """One optimizer statistic over time: a panel per attention layer, a line per head (same colour = same head)."""
    title, y_label = MEMORY_METRICS[metric]
    names = [n for n in snap.attention_names if any(n in p.heads for p in snap.optim)]
    if not names:
        return _waiting(_layout(title, snap.run_id, 300), "Waiting for the first training step…")
    layout = _layout(
        title,
        snap.run_id,
        330,
        **_grid([plotly_text(attention_short_title(n)) for n in names], cols=len(names), gap_x=0.06, gap_y=0),
    )
    data, recorded = [], False
    for panel, name in enumerate(names):
        x_axis, y_axis = _axes(panel)
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
                _line(
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
        layout["annotations"].append(_note(_no_memory(snap.config)))
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
    layout = _layout(
        "Race: loss of the same model and data under two optimizers (lower is better)",
        f"{main.run_id}:{race.run_id}:{log}",
        400,
        xaxis=steps_axis(main),
        yaxis=loss_axis(log),
    )
    if not race.loss.steps:
        return _waiting(layout, "Waiting for the race's first step…")
    data = []
    for snap, color in ((main, "#1f77b4"), (race, "#ff7f0e")):
        label = plotly_text(f"{optimizer_name(snap.config)} (lr {snap.config.get('lr', '?')})")
        data.append(_line(*cap(snap.loss.steps, snap.loss.values), f"{label}: training batches", color, 1, opacity=0.5))
        if snap.evals:
            x, y = cap([e.step for e in snap.evals], [e.heldout_loss for e in snap.evals])
            data.append(_line(x, y, f"{label}: held-out", color, 2.5, mode="lines+markers", marker={"size": 4}))
    return go.Figure(data=data, layout=layout)


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


TICK_LABEL = 16  # characters of a word on a heatmap's axis; the hover shows it whole


def _heads_heatmap(
    title: str, revision: str, weights: np.ndarray, rows: list[str], columns: list[str], short_rows: bool
) -> go.Figure:
    """(H, rows, columns) weights as one panel per head, two panels a row; `short_rows`: a few named rows of the
    figure's own; every other row and column label is a word of a claim (a run's probe file: untrusted)."""
    titles = [f"Head {h + 1} · peak {weights[h].max(axis=-1).mean():.2f}" for h in range(weights.shape[0])]
    # Pixel sizes, so long words and long claims never push a label into the next panel's title.
    labels = [plotly_text(t, TICK_LABEL) for t in columns]  # the hover keeps the whole word
    label_px = 6 * max(min(len(t), TICK_LABEL) for t in columns) + 12
    panel_px = 88 if short_rows else max(180, min(420, 28 * len(rows)))
    gap_px = 0.87 * label_px + 45  # rotated labels below a panel, then the title of the one under it
    n_rows = -(-len(titles) // 2)
    plot_px = n_rows * panel_px + (n_rows - 1) * gap_px
    margin = {"l": 80 if short_rows else label_px + 20, "r": 20, "t": 90, "b": 0.87 * label_px + 20}
    layout = _layout(
        title,
        revision,
        round(plot_px + margin["t"] + margin["b"]),
        **_grid(titles, min(2, len(titles)), gap_x=0.12, gap_y=gap_px / plot_px),
        hovermode="closest",
        margin=margin,
        coloraxis={
            "colorscale": "Viridis",
            "cmin": 0,
            "cmax": 1,
            "colorbar": {"title": {"text": "weight"}, "len": min(1.0, 400 / plot_px)},
        },
    )
    row_labels = rows if short_rows else [plotly_text(t, TICK_LABEL) for t in rows]
    whole_columns = [plotly_text(k) for k in columns]
    hover = np.array([[[q, k] for k in whole_columns] for q in map(plotly_text, rows)], dtype=object)
    data = []
    for head in range(weights.shape[0]):
        x_axis, y_axis = _axes(head)
        layout[f"xaxis{x_axis[1:]}"].update(
            tickvals=list(range(len(columns))), ticktext=labels, tickangle=-60, tickfont={"size": 11}
        )
        layout[f"yaxis{y_axis[1:]}"].update(
            tickvals=list(range(len(rows))), ticktext=row_labels, autorange="reversed", tickfont={"size": 11}
        )
        data.append(
            {
                "type": "heatmap",
                "z": weights[head],
                "customdata": hover,
                "coloraxis": "coloraxis",
                "xaxis": x_axis,
                "yaxis": y_axis,
                "name": f"Head {head + 1}",
                "hovertemplate": "<b>%{customdata[0]}</b> looks at <b>%{customdata[1]}</b><br>"
                f"weight %{{z:.3f}}<extra>Head {head + 1}</extra>",
            }
        )
    return go.Figure(data=data, layout=layout)
