"""Pure builders for Inspect: one claim's prediction in, a plotly figure or a snippet of escaped HTML out: its
tokens as chips, the confidence in each outcome, and what each head looks at in this claim."""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard.head_figures import ENCODER, MARGIN, figure_layout
from dashboard.outcome_words import outcome_text
from dashboard.untrusted import plotly_text
from data.rules import CLASSES
from data.tokenizer import Tokenizer
from data.vocabulary import Token
from engine.interpret.prediction import Prediction
from engine.task.claims_model import CROSS

CATEGORY_COLORS = {
    "diagnosis": "#d62728", "drug": "#9467bd", "dose": "#8c564b", "procedure": "#1f77b4", "amount": "#ff7f0e",
    "age": "#17becf", "sex": "#e377c2", "specialty": "#2ca02c", "place": "#bcbd22", "other": "#7f7f7f",
}  # fmt: skip


def token_label(token: Token) -> str:
    return f"{token.surface} ⟨unk⟩" if token.text == Tokenizer.UNK else token.surface


def token_chips_html(tokens: Sequence[Token]) -> str:
    """The claim's tokens as chips coloured by field category; unknown words stand out as ⟨unk⟩. All text escaped."""
    chips = []
    for token in tokens:
        unknown = token.text == Tokenizer.UNK
        color = "#9e9e9e" if unknown else CATEGORY_COLORS.get(token.category, "#7f7f7f")
        caption = "&lt;unk&gt; unknown word" if unknown else html.escape(token.category)
        border = "dashed" if unknown else "solid"
        chips.append(
            f'<span style="display:inline-block;margin:0 6px 6px 0;padding:3px 8px;border-radius:6px;'
            f'border:2px {border} {color};background:{color}1f;line-height:1.25">'
            f'{html.escape(token.surface)}<br><span style="font-size:0.75em;color:{color}">{caption}'
            "</span></span>"
        )
    return f'<div style="display:flex;flex-wrap:wrap">{"".join(chips)}</div>'


def category_legend_html() -> str:
    items = "".join(
        f'<span style="margin-right:12px;color:{color}">■ {name}</span>' for name, color in CATEGORY_COLORS.items()
    )
    return f'<div style="font-size:0.8em">{items}</div>'


def probabilities_figure(prediction: Prediction, what_if: Prediction | None = None) -> go.Figure:
    """The model's confidence in each of the five outcomes (and in the what-if claim's, beside it)."""
    labels = [outcome_text(c) for c in CLASSES]
    bars = [("This claim", prediction, "#1f77b4")]
    if what_if is not None and what_if.probabilities:
        bars.append(("What-if", what_if, "#ff7f0e"))
    data = [
        {
            "type": "bar",
            "orientation": "h",
            "y": labels,
            "x": [p.probabilities.get(c, 0.0) for c in CLASSES],
            "name": name,
            "marker": {"color": color},
            "texttemplate": "%{x:.0%}",
            "textposition": "outside",
            "cliponaxis": False,
            "hovertemplate": "%{y}: %{x:.1%}<extra>" + name + "</extra>",
        }
        for name, p, color in bars
    ]
    return go.Figure(
        data=data,
        layout=figure_layout(
            "Confidence in each outcome",
            150 + 45 * len(bars) * len(CLASSES) // 2,
            xaxis={"range": [0, 1.15], "tickformat": ".0%"},
            yaxis={"autorange": "reversed"},
            barmode="group",
            legend={"orientation": "h", "y": -0.2},
            margin={**MARGIN, "l": 140},
        ),
    )


LABEL_CHARS = 70  # of a head's name above its chart in Inspect's half-width column


def _head_titles(prediction: Prediction, name: str, labels: Sequence[str] | None) -> list[str]:
    """'Head 1 · without it: same answer', and the head's name on a line of its own (a head shared with others has
    a long one), shortened to what a half-width chart holds."""
    ablated = prediction.ablation.get(name, ())
    titles = []
    for head in range(prediction.attention[name].shape[0]):
        title = f"<b>Head {head + 1}</b>"
        if head < len(ablated):
            changed = ablated[head] != prediction.outcome
            title += f" · without it: {outcome_text(ablated[head]) if changed else 'same answer'}"
        if labels and head < len(labels):
            title += f"<br>{plotly_text(labels[head], LABEL_CHARS)}"
        titles.append(title)
    return titles


def claim_cross_figure(prediction: Prediction, labels: Sequence[str] | None = None, name: str = CROSS) -> go.Figure:
    """Per head, what the answer looks at in this claim: the position that answers VALID or INVALID, and the one
    that answers the reason (two rows of weights a head)."""
    weights = prediction.attention[name][:, :2, :]  # (H, 2, T): row 0 answers the verdict, row 1 the reason
    tokens = [plotly_text(token_label(t), 18) for t in prediction.tokens]
    n_heads = weights.shape[0]
    fig = make_subplots(
        rows=n_heads,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.45 / n_heads,
        subplot_titles=_head_titles(prediction, name, labels),
    )
    for head in range(n_heads):
        fig.add_trace(
            go.Heatmap(
                z=weights[head],
                x=list(range(len(tokens))),
                y=["→ verdict", "→ reason"],
                coloraxis="coloraxis",
                customdata=np.array([tokens, tokens], dtype=object),
                hovertemplate=f"Head {head + 1} looks at <b>%{{customdata}}</b>: %{{z:.3f}}<extra></extra>",
                name=f"Head {head + 1}",
                texttemplate="%{z:.2f}",
                xgap=1,
            ),
            row=head + 1,
            col=1,
        )
    fig.update_xaxes(tickvals=list(range(len(tokens))), ticktext=tokens, tickangle=-45)
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(
        **figure_layout(
            "Cross-attention: what the verdict and the reason look at in this claim",
            120 + 145 * n_heads,
            coloraxis={"colorscale": "Viridis", "cmin": 0, "cmax": 1},
            hovermode="closest",
        )
    )
    fig.update_annotations(font={"size": 12}, xanchor="left", x=0)
    return fig


def claim_encoder_figure(prediction: Prediction, name: str = ENCODER) -> go.Figure:
    """Per head, side by side, how the claim's words read each other inside the encoder (rows look at columns)."""
    weights = prediction.attention[name]  # (H, T, T)
    tokens = [plotly_text(token_label(t), 14) for t in prediction.tokens]
    n_heads = weights.shape[0]
    fig = make_subplots(
        rows=1,
        cols=n_heads,
        horizontal_spacing=0.03,
        shared_yaxes=True,
        subplot_titles=_head_titles(prediction, name, None),
    )
    hover = np.array([[[q, k] for k in tokens] for q in tokens], dtype=object)
    for head in range(n_heads):
        fig.add_trace(
            go.Heatmap(
                z=weights[head],
                coloraxis="coloraxis",
                customdata=hover,
                name=f"Head {head + 1}",
                hovertemplate="<b>%{customdata[0]}</b> looks at <b>%{customdata[1]}</b>: "
                f"%{{z:.3f}}<extra>Head {head + 1}</extra>",
            ),
            row=1,
            col=head + 1,
        )
    axis = {"tickvals": list(range(len(tokens))), "ticktext": tokens, "tickfont": {"size": 10}}
    fig.update_xaxes(**axis, tickangle=-60)
    fig.update_yaxes(**axis, autorange="reversed")
    longest = max(len(t) for t in tokens)
    fig.update_layout(
        **figure_layout(
            "Encoder self-attention: how the claim's words read each other",
            330 + 6 * longest,
            coloraxis={"colorscale": "Viridis", "cmin": 0, "cmax": 1},
            hovermode="closest",
        )
    )
    fig.update_annotations(font={"size": 12})
    return fig
