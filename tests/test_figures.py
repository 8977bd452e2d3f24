"""Figure and text builders, on hand-built snapshots: right traces, capped points, readable labels, no crash."""

from __future__ import annotations

import colorsys
import json
from dataclasses import replace

import numpy as np
import pytest

from dashboard import attention_figures, chart_parts, figures, summaries
from engine.telemetry import AttentionPoint, Series, Snapshot


def traces(fig, kind: str = "scatter") -> list:
    return [t for t in fig.data if t.type == kind]


def annotations(fig) -> str:
    return " ".join(a.text for a in fig.layout.annotations)


def test_cap_keeps_first_and_newest_points():
    steps, values = chart_parts.cap(list(range(10_000)), [float(i) for i in range(10_000)], limit=100)
    assert len(steps) <= 100
    assert steps[0] == 0 and steps[-1] == 9999
    np.testing.assert_array_equal(values, steps)
    steps, values = chart_parts.cap([1, 2], [3.0, None])
    assert steps.tolist() == [1, 2] and values[0] == 3.0 and np.isnan(values[1])


def test_loss_figure_has_train_and_heldout_capped(snapshot_factory):
    fig = figures.loss_figure(snapshot_factory(steps=3000))
    lines = traces(fig)
    assert [t.name for t in lines] == ["Training batches", "Held-out claims (never trained on)"]
    assert all(len(t.x) <= chart_parts.MAX_POINTS for t in lines)
    assert lines[0].x[-1] == 3000  # the newest point always survives capping
    assert fig.layout.uirevision == "run-1"
    assert "lower is better" in fig.layout.title.text
    assert fig.layout.xaxis.title.text == "Training step"
    json.loads(fig.to_json())  # what Streamlit sends


def test_empty_snapshot_says_it_is_waiting_instead_of_empty_axes():
    idle = Snapshot()
    for fig in (
        figures.loss_figure(idle),
        figures.accuracy_figure(idle),
        figures.memory_figure(idle, "mean_abs_m"),
        figures.race_figure(idle, idle),
    ):
        assert not fig.data
        assert annotations(fig)


def test_accuracy_figure_overall_and_per_reason(snapshot_factory):
    fig = figures.accuracy_figure(snapshot_factory())
    names = [t.name for t in traces(fig)]
    assert names == ["All, held-out", "All, training", "VALID", "MEDICAL", "DOSAGE", "COST", "ADMIN"]
    assert tuple(fig.layout.yaxis.range) == (0, 1.02)
    json.loads(fig.to_json())  # a class with no claims (NaN accuracy) still serializes
    early = replace(snapshot_factory(), evals=snapshot_factory().evals[:1], total_steps=3500)  # only step 0 so far
    assert tuple(figures.accuracy_figure(early).layout.xaxis.range) == (0, 3500)  # the whole run, from the start


@pytest.mark.parametrize("metric", list(figures.MEMORY_METRICS))
def test_memory_figure_has_a_line_per_head_and_a_panel_per_layer(snapshot_factory, metric):
    snap = snapshot_factory()
    fig = figures.memory_figure(snap, metric)
    lines = traces(fig)
    assert len(lines) == len(snap.attention_names) * snap.n_heads
    assert sorted({t.name for t in lines}) == ["Head 1", "Head 2", "Head 3", "Head 4"]
    assert sum(bool(t.showlegend) for t in lines) == snap.n_heads  # one legend entry per head
    assert {t.xaxis for t in lines} == {"x", "x2", "x3"}
    assert all(len(t.x) <= chart_parts.MAX_POINTS for t in lines)
    assert [a.text for a in fig.layout.annotations][:3] == [
        "Encoder self-attention",
        "Decoder self-attention",
        "Decoder cross-attention",
    ]
    assert fig.layout.title.text == figures.MEMORY_METRICS[metric][0]


def test_memory_figure_under_sgd_says_there_is_no_memory(snapshot_factory):
    fig = figures.memory_figure(snapshot_factory(optimizer="sgd"), "mean_abs_m")
    assert "SGD keeps no such memory" in annotations(fig)
    assert "keeps no" not in annotations(figures.memory_figure(snapshot_factory(optimizer="sgd"), "grad_norm"))


def test_race_figure_overlays_both_optimizers(snapshot_factory):
    main = snapshot_factory(run_id="a")
    rival = snapshot_factory(optimizer="sgd", run_id="b", steps=1000, loss_scale=1.5)
    names = [t.name for t in traces(figures.race_figure(main, rival))]
    assert names == [
        "Adam (lr 0.003): training batches",
        "Adam (lr 0.003): held-out",
        "SGD (lr 0.1): training batches",
        "SGD (lr 0.1): held-out",
    ]


@pytest.mark.parametrize(("name", "rows"), [("decoder.0.cross", 2), ("encoder.0.self", None)])
def test_attention_figure_one_heatmap_per_head_sliced_to_the_claim(snapshot_factory, name, rows):
    snap = snapshot_factory()
    claim = 1
    tokens = snap.probe[claim].tokens
    fig = attention_figures.attention_figure(snap, snap.attention[-1], name, claim)
    maps = traces(fig, "heatmap")
    assert len(maps) == 4
    for head, heatmap in enumerate(maps):
        z = np.asarray(heatmap.z)
        assert z.shape == (rows or len(tokens), len(tokens))  # padding is cut off
        expected = snap.attention[-1].weights[name][claim, head, : z.shape[0], : len(tokens)]
        np.testing.assert_allclose(z, expected)
        assert heatmap.customdata[0][1][1] == tokens[1]
        assert "weight %{z:.3f}" in heatmap.hovertemplate
    axis = fig.layout.xaxis
    assert list(axis.ticktext) == list(tokens)  # both "flu" tokens keep their own column
    assert list(axis.tickvals) == list(range(len(tokens)))
    assert fig.layout.coloraxis.cmin == 0 and fig.layout.coloraxis.cmax == 1
    assert fig.layout.uirevision == f"run-1:{name}:{claim}"
    assert "step" in fig.layout.title.text
    json.loads(fig.to_json())


def test_cross_attention_rows_are_verdict_and_reason(snapshot_factory):
    snap = snapshot_factory()
    fig = attention_figures.attention_figure(snap, snap.attention[0], "decoder.0.cross", 0)
    assert list(fig.layout.yaxis.ticktext) == ["→ verdict", "→ reason"]


def test_attention_titles_are_plain_words():
    assert (
        attention_figures.attention_title("decoder.0.cross")
        == "Decoder cross-attention: the answer looking at the claim"
    )
    assert attention_figures.attention_title("encoder.1.self").endswith("(layer 2)")


def test_progress_and_status_text(snapshot_factory):
    snap = snapshot_factory(steps=600)
    assert summaries.progress_text(snap) == "Step 600 of 600 · 50.0 steps/s · about 0 s left"
    assert summaries.duration(125) == "2 min 05 s"
    assert summaries.status_text(Snapshot()).startswith("No training yet")
    assert summaries.status_text(Snapshot(status="failed", message="Training failed: boom")) == "Training failed: boom"
    paused = Snapshot(status="paused", step=5, message="Paused at step 5")
    assert summaries.status_text(paused) == "Paused at step 5. Press Resume to continue."
    assert summaries.config_text(snap.config) == "Adam, learning rate 0.003, batch 32, seed 0, 600 steps"
    assert "the seed does not repeat it" in summaries.config_text({**snap.config, "threads": 0})
    cosine = {"schedule": "cosine", "warmup_steps": 100, "steps": 2500, "decay_fraction": 0.8}
    assert summaries.schedule_text(cosine) == (
        "learning-rate warm-up over 100 steps, then a cosine down to 10% by step 2,000"
    )
    older = {"schedule": "cosine", "warmup_steps": 100, "steps": 2000}  # saved before decay_fraction existed
    assert summaries.schedule_text(older).endswith("by step 2,000")
    assert summaries.schedule_text({"schedule": "constant", "warmup_steps": 0}).endswith(", then constant")


def test_race_summary_compares_at_the_same_step_and_says_who_is_lower(snapshot_factory):
    main = snapshot_factory(steps=3000)
    rival = snapshot_factory(optimizer="sgd", steps=400, loss_scale=2.0)
    text = summaries.race_summary(main, rival)
    assert text.startswith("At step 400,")
    assert "Adam's training loss is 1.9 times lower than SGD's" in text  # the rival's losses are about twice as high
    assert "On held-out claims (never trained on) at step 400, Adam's loss is 2.0 times lower" in text
    assert "While both losses were above 0.1 (steps 1 to 400)" in text
    assert summaries.race_summary(main, Snapshot()) == "The race has not produced any steps yet."
    same = summaries.race_summary(main, snapshot_factory(optimizer="sgd", steps=400))
    assert "the training loss is about the same for both" in same and "neither swung back and forth more" in same


def losses(snap: Snapshot, values: np.ndarray) -> Snapshot:
    steps = tuple(range(1, len(values) + 1))
    return replace(snap, loss=Series(steps, tuple(values)), step=len(values), evals=())


def test_swings_are_measured_only_while_the_loss_still_means_something(snapshot_factory):
    falling = 2 * np.exp(-np.arange(500) / 300) + 0.2
    zigzag = falling + 0.3 * (np.arange(500) % 2)  # up every other step
    smooth, swinging = losses(snapshot_factory(), falling), losses(snapshot_factory(optimizer="sgd"), zigzag)
    said = summaries.race_summary(smooth, swinging)
    assert "at 0% of Adam's and 50% of SGD's: SGD swung back and forth more often than Adam" in said
    # near zero, relative jitter is only noise: 0.010 -> 0.011 is a 10% jump, not a swing
    tiny = losses(snapshot_factory(), 0.01 + 0.001 * (np.arange(500) % 2))
    said = summaries.race_summary(tiny, swinging)
    assert "was below 0.1 from the start, too soon to compare swings" in said and "swung" not in said
    late = np.concatenate([falling[:100], np.full(400, 0.01) + 0.005 * (np.arange(400) % 2)])
    said = summaries.race_summary(losses(snapshot_factory(), late), swinging)
    assert "(steps 1 to 99)" in said and "Adam swung" not in said  # the phase ends where Adam's loss fell below 0.1


def test_a_race_of_a_few_steps_is_too_short_to_tell(snapshot_factory):
    said = summaries.race_summary(
        losses(snapshot_factory(), np.full(5, 2.0)), losses(snapshot_factory(optimizer="sgd"), np.full(5, 2.0))
    )
    assert said.endswith("Too few steps so far (5) to say whether either loss swings back and forth.")


def test_two_curves_kept_at_other_resolutions_are_compared_on_one_grid(snapshot_factory):
    fine = losses(snapshot_factory(optimizer="sgd"), 2 - np.arange(4000) / 4000)
    coarse = replace(fine, loss=Series(tuple(range(2, 4001, 2)), tuple(2 - np.arange(1, 4000, 2) / 4000)))
    said = summaries.race_summary(replace(coarse, config={**coarse.config, "optimizer": "adam"}), fine)
    assert "from one stretch of 2 steps to the next at 0% of Adam's and 0% of SGD's" in said


@pytest.mark.parametrize("tokens", [1, 2, 3, 7, 11, 30, 48])
def test_attention_grid_fits_any_claim_length(snapshot_factory, tokens):
    snap = snapshot_factory()
    probe = replace(snap.probe[0], tokens=tuple(f"t{i}" for i in range(tokens)))
    weights = {
        name: np.full((1, 4, tokens if name.startswith("encoder") else 2, tokens), 1 / tokens)
        for name in snap.attention_names
    }
    snap = replace(snap, probe=(probe,), attention=(AttentionPoint(5, weights),))
    for name in ("encoder.0.self", "decoder.0.cross"):
        fig = attention_figures.attention_figure(snap, snap.attention[0], name, 0)
        domains = [fig.layout[f"yaxis{i or ''}"].domain for i in (0, 2, 3, 4)]
        assert all(0 <= low < high <= 1 for low, high in domains)


def test_long_words_are_shortened_on_the_axes_but_whole_in_the_hover(snapshot_factory):
    snap = snapshot_factory()
    long_word = "Gastro-esophageal reflux disease"
    probe = replace(snap.probe[0], tokens=("Dx", long_word))
    snap = replace(snap, probe=(probe,))
    fig = attention_figures.attention_figure(snap, snap.attention[0], "encoder.0.self", 0)
    assert list(fig.layout.xaxis.ticktext) == ["Dx", "Gastro-esophage…"]
    assert fig.data[0].customdata[0][1][1] == long_word


def test_compare_figure_puts_both_runs_on_one_set_of_axes(snapshot_factory):
    a, b = snapshot_factory(steps=3000), snapshot_factory(steps=400, optimizer="sgd", run_id="run-2")
    fig = figures.compare_figure(a, b)
    assert [t.name for t in fig.data] == [
        "A: held-out accuracy",
        "A: training loss",
        "B: held-out accuracy",
        "B: training loss",
    ]
    assert {t.yaxis for t in fig.data[1::2]} == {"y2"} and fig.layout.yaxis2.type == "log"
    assert max(fig.data[0].x) == 3000 and max(fig.data[2].x) == 400  # each run as far as it went
    assert not figures.compare_figure(Snapshot(), Snapshot()).data


def test_one_colour_per_outcome_and_charts_of_one_run_share_their_step_axis(snapshot_factory):
    colours = list(figures.CLASS_COLORS.values())
    assert len(set(colours)) == len(colours) == 5
    hues = [colorsys.rgb_to_hsv(*(int(c[i : i + 2], 16) / 255 for i in (1, 3, 5)))[0] * 360 for c in colours]
    assert sum(h < 20 or h > 340 for h in hues) == 1  # MEDICAL alone is red (ADMIN was a brownish red, 9°)
    snap = snapshot_factory(steps=3000)
    early = replace(snap, loss=Series(snap.loss.steps[:30], snap.loss.values[:30]), evals=snap.evals[:1])
    for figure in (figures.loss_figure(early), figures.accuracy_figure(snap)):
        assert list(figure.layout.xaxis.range) == [0, snap.total_steps]
    assert figures.loss_figure(snap, log=True).layout.yaxis.type == "log"
    assert figures.compare_figure(snap, snap).layout.yaxis2.exponentformat == "none"
