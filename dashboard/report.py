"""The Story's figures, its example claims as this model judges them, and a self-contained HTML report of it all: the
chapters told by dashboard.story_words, with their figures. Pure: snapshots, measurements and a model in, figures,
table rows and HTML out.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import plotly.graph_objects as go

from dashboard import figures, head_figures, head_overview_figures, outcome_words, summaries
from dashboard.head_words import heads_title
from dashboard.measurement import Measurement, latest_measurement, unfinished
from dashboard.story_words import NO_REFERENCES, percent_text, tell_story
from dashboard.untrusted import markdown_html
from engine.interpret.inference import Predictor
from engine.reports.reference_studies import References
from engine.task.dataset import EXAMPLE_CLAIMS
from engine.telemetry import Snapshot


def chapter_figures(
    snap: Snapshot,
    race: Snapshot | None = None,
    measurement: Measurement | None = None,
    references: References = NO_REFERENCES,
) -> dict[str, list[go.Figure]]:
    """The figures beside each chapter: the heads as cards, the heads sharpening, the curves, what each check needs
    from each head, and the shipped studies."""
    measurement = measurement or latest_measurement(snap)
    during = [figures.loss_figure(snap), figures.accuracy_figure(snap)]
    if race is not None and race.loss.steps:
        during.append(figures.race_figure(snap, race))
    after = [head_figures.necessity_figure([measurement.point])] if measurement else []
    answer = []
    if measurement and measurement.cross:
        step = measurement.point.step
        answer.append(head_overview_figures.heads_figure(measurement.cross, heads_title(step, unfinished(snap, step))))
    return {
        "answer": answer,
        "before": [head_figures.shares_figure(snap.specialization, start=0)],
        "during": during,
        "after": after,
        "reference": [head_overview_figures.studies_figure(references.studies)] if references.studies else [],
    }


EXAMPLES_TITLE = "Some claims, judged by this model"
EXAMPLES_CAPTION = (
    "The model's answers at step {step:,}, beside what the app's rules say. A confident answer can "
    "still be wrong: the rules are the reference."
)


def judged_examples(predictor: Predictor) -> list[dict[str, object]]:
    """The example claims as this model judges them, beside the rules (the Story's table and the report's)."""
    rows = []
    for text in EXAMPLE_CLAIMS:
        said = predictor.predict(text, with_ablation=False)
        rows.append(
            {
                "Claim": text,
                "The model says": outcome_words.said_text(said),
                "How sure": said.confidence if said.judged else None,
                "The rules say": outcome_words.verdict_text(*(said.rules or (None, None))),
            }
        )
    return rows


def _examples_html(examples: Sequence[dict[str, object]], step: int) -> list[str]:
    header = "".join(f"<th>{html.escape(name)}</th>" for name in examples[0])
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(value))}</td>" for value in row.values()) + "</tr>"
        for row in examples
    )
    return [
        f"<h2>{EXAMPLES_TITLE}</h2>",
        f"<p>{html.escape(EXAMPLES_CAPTION.format(step=step))}</p>",
        f"<table><thead><tr>{header}</tr></thead><tbody>{rows}</tbody></table>",
    ]


def _cell(value: object) -> str:
    return percent_text(value) if isinstance(value, float) else str(value)


REPORT_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.5}"
    ".meta{color:#666}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;"
    "text-align:left}"
)


def html_report(
    snap: Snapshot,
    race: Snapshot | None = None,
    measurement: Measurement | None = None,
    created: str = "",
    examples: tuple[Sequence[dict[str, object]], int] | None = None,
    references: References = NO_REFERENCES,
) -> str:
    """One HTML file with the story, its figures and (when given: rows and the step of the model that judged them)
    the example claims as the model judged them; plotly.js is embedded, so it opens with no internet."""
    chapters = tell_story(snap, race, measurement, references)
    figs = chapter_figures(snap, race, measurement, references)
    title = f"Headwatch: how run {snap.run_id or '(unsaved)'} learned to audit claims"
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='meta'>{html.escape(summaries.config_text(snap.config))}. "
        f"{html.escape(summaries.status_text(snap))} {html.escape(created)}</p>",
    ]
    if not chapters:
        body.append("<p>This run has no measurements yet.</p>")
    embedded = False
    for chapter in chapters:
        body.append(f"<h2>{html.escape(chapter.title)}</h2>")
        body.extend(f"<p>{markdown_html(p)}</p>" for p in chapter.paragraphs)
        for fig in figs.get(chapter.key, []):
            # auto_play off: an animated figure opens at the step it shows (Before: step 0), not played to the end
            body.append(
                fig.to_html(
                    full_html=False,
                    include_plotlyjs=not embedded,
                    config=figures.CHART_CONFIG,
                    default_width="100%",
                    auto_play=False,
                )
            )
            embedded = True
    if chapters and examples is not None and examples[0]:
        body.extend(_examples_html(*examples))
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{REPORT_STYLE}</style></head><body>{''.join(body)}</body></html>"
    )
