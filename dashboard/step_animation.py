"""A figure that steps through training, for the head pages' heatmaps (dashboard.head_figures): one frame per
measured step, a slider to pick a step and a Play button that runs through them all. Pure: points in, figure out."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import plotly.graph_objects as go

from engine.telemetry import SpecializationPoint


def stepped_figure(
    points: Sequence[SpecializationPoint], trace: Callable[[SpecializationPoint], dict], layout: dict, start: int
) -> go.Figure:
    """`trace(point)` for every measured step, opening at `points[start]` (negative: counted from the newest); one
    measured step is a still figure, with nothing to step through."""
    start = start % len(points)
    if len(points) == 1:
        return go.Figure(data=[trace(points[0])], layout=layout)
    frames = [{"name": str(p.step), "data": [trace(p)]} for p in points]
    layout = {**layout, "sliders": [_step_slider(points, start)], "updatemenus": [_play_button()]}
    return go.Figure(data=[trace(points[start])], frames=frames, layout=layout)


def _step_slider(points: Sequence[SpecializationPoint], start: int) -> dict:
    still = {"mode": "immediate", "frame": {"duration": 0, "redraw": True}, "transition": {"duration": 0}}
    return {
        "active": start,
        "currentvalue": {"prefix": "Training step "},
        "pad": {"t": 10},
        "len": 0.85,
        "x": 0.15,
        "steps": [{"label": f"{p.step:,}", "method": "animate", "args": [[str(p.step)], still]} for p in points],
    }


def _play_button() -> dict:
    play = {"frame": {"duration": 700, "redraw": True}, "transition": {"duration": 0}, "fromcurrent": False}
    return {
        "type": "buttons",
        "showactive": False,
        "x": 0.0,
        "y": 0,
        "xanchor": "left",
        "yanchor": "top",
        "pad": {"t": 45},
        "direction": "left",
        "buttons": [{"label": "▶ Play", "method": "animate", "args": [None, play]}],
    }
