"""Text from a run folder, a study file or a claims file is text: links, images and markup put in every field a page
shows stay plain characters on every page, in every chart and in the HTML report."""

from __future__ import annotations

import csv
import html
import io
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from test_watch import model_and_optimizer, train

from dashboard import measurement, report
from dashboard.engine_resource import get_engine
from dashboard.untrusted import markdown_text
from engine.recording.watch import watch
from engine.reports.study_results import STUDY

PAYLOAD = (
    '[click](https://evil.example) ![pixel](https://tracker.example/p.png) <a href="https://evil.example">a</a> '
    '<b style="font-size:90px">big</b> <img src="https://tracker.example/i.png"> :red[red] :material/home: '
    "$x^2$ **bold** `code` www.evil.example"
)
# Rendered by Streamlit's Markdown wherever one of these is in an element's source as written (not backslash-escaped)
RAW_MARKDOWN = re.compile(
    r"(?<!\\)("
    + "|".join(
        map(re.escape, ("[click](", "![pixel](", "<a href", "<b style", "<img", ":red[", "$x^2$", "**bold**", "`code`"))
    )
    + ")",
    re.IGNORECASE,
)
# ... or, for these, in its text once escapes and character references are read: GitHub's links and Streamlit's icons
# are found there
IN_TEXT = ("://evil.example", "://tracker.example", "www.evil.example", ":material/", ":red[")
ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
RAW_PLOTLY = ("<a href", "<b style", "<img")  # plotly's own HTML in titles, labels and hover text
HOSTILE_RUN = "www.evil.example"  # a valid run id, and a link by itself in Markdown
WATCHED_RUN = "watched"
LAYER = "0.layers.0.self_attn"
CLAIMS_PAGES = ("train", "adam", "attention", "specialization", "verdict", "inspect_claim", "story", "runs")
WATCHED_PAGES = ("train", "adam", "attention", "runs")


def hostile(field: str) -> str:
    return f"{field} {PAYLOAD}"


def rewrite_json(path: Path, change) -> None:
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


def renamed(text: str, old: str, new: str) -> str:
    return text.replace(json.dumps(old), json.dumps(new))


def spoil_claims_run(run: Path) -> None:
    """Every text field of a Headwatch run, hostile; no weights, so the pages read the heads' names from the file."""
    rewrite_json(
        run / "config.json",
        lambda c: {
            **c,
            "optimizer": hostile("optimizer"),
            "preset": hostile("preset"),
            "schedule": hostile("schedule"),
        },
    )
    # saved before runs had a format: its status said how it ended in a sentence of its own
    rewrite_json(run / "config.json", lambda c: {k: v for k, v in c.items() if k != "format"})
    rewrite_json(
        run / "status.json",
        lambda s: {
            "status": "finished",
            "message": hostile("message"),
            "step": s["step"],
            "chance": s["chance"],
            "commonest": s["commonest"],
        },
    )
    rewrite_json(
        run / "probe.json",
        lambda probe: [{**c, "text": hostile("claim"), "tokens": [hostile("token"), *c["tokens"][1:]]} for c in probe],
    )
    last = json.loads(
        [line for line in (run / "metrics.jsonl").read_text().splitlines() if '"specialization"' in line][-1]
    )
    for name, heads in last["heads"].items():
        for index, head in enumerate(heads):  # a specialist of a hostile reason, or a kind of head no run has
            role = (
                {"kind": "specialist", "reason": hostile(f"reason {name} {index}")}
                if index % 2 == 0
                else {"kind": hostile(f"kind {name} {index}"), "shared_with": {hostile("shared"): [0]}}
            )
            head.update(role, shares={**head["shares"], hostile("category"): 0.9})
    with open(run / "metrics.jsonl", "a") as file:
        file.write(json.dumps({**last, "step": last["step"] + 1}) + "\n")
    (run / "checkpoints" / "latest.pt").unlink()


def watched_run(folder: Path) -> None:
    """A watched model whose optimizer, layer and metric names are hostile."""
    model, optimizer = model_and_optimizer()
    with watch(model, optimizer, folder, every=2) as watcher:
        train(model, optimizer, 6, watcher, metrics=True)
    layer = hostile("layer")
    config = renamed((folder / "config.json").read_text(), LAYER, layer)
    (folder / "config.json").write_text(config)
    rewrite_json(
        folder / "config.json", lambda c: {**c, "optimizer": hostile("optimizer"), "optimizer_name": "www.evil.example"}
    )
    metrics = renamed(renamed((folder / "metrics.jsonl").read_text(), LAYER, layer), "mean error", hostile("metric"))
    (folder / "metrics.jsonl").write_text(metrics)
    rewrite_json(
        folder / "status.json",
        lambda s: {
            **s,
            "status": "failed",
            "ended_by": "failed",
            "failure": "refused",
            "problem": hostile("watched message"),
        },
    )
    for path in (folder / "attention").glob("step_*.pt"):
        weights = torch.load(path, weights_only=True)
        torch.save({layer if name == LAYER else name: w for name, w in weights.items()}, path)


def saved_study(engine_env: Path) -> None:
    folder = get_engine().study_folder("default", 5)
    folder.mkdir(parents=True)
    necessity = [dict.fromkeys(("MEDICAL", "DOSAGE", "COST", "sex", "age", "specialty", "place"), 0.0)] * 2
    seeds = [
        {
            "seed": s,
            "steps": 3500,
            "accuracy": 0.9,
            "labels": [hostile("study label"), "COST specialist"],
            "owns": [None, "COST"],
            "necessity": necessity,
            "leans": [hostile("leans"), None],
        }
        for s in range(2)
    ]
    (folder / STUDY).write_text(json.dumps({"recipe": {}, "results": seeds}))


@pytest.fixture
def hostile_runs(engine_env: Path, saved_run: str) -> Path:
    spoil_claims_run(shutil.copytree(engine_env / saved_run, engine_env / HOSTILE_RUN))
    watched_run(engine_env / WATCHED_RUN)
    saved_study(engine_env)
    return engine_env


def markdown_sources(at) -> list[str]:
    """What the page hands Streamlit's Markdown renderer: the text elements, and every label, help and progress text."""
    kinds = ("markdown", "caption", "info", "warning", "error", "success", "title", "header", "subheader")
    sources = [element.value for kind in kinds for element in getattr(at, kind)]
    for node in at.main:
        sources += [
            value for name in ("label", "help", "text") if isinstance(value := getattr(node.proto, name, None), str)
        ]
    return sources


def plotly_strings(at) -> list[str]:
    """Every string of every chart but `uirevision`, an identity plotly compares and never shows."""

    def strings(value) -> list[str]:
        if isinstance(value, str):
            return [value]
        if isinstance(value, dict):
            value = [v for k, v in value.items() if k != "uirevision"]
        return [s for item in value for s in strings(item)] if isinstance(value, list) else []

    return strings([json.loads(chart.proto.spec) for chart in at.get("plotly_chart")])


def assert_plain(at, page: str) -> tuple[str, str]:
    """No Markdown source and no chart text carries markup as written; both, joined, for the caller's checks."""
    sources, charts = markdown_sources(at), plotly_strings(at)
    assert not [s for s in sources if RAW_MARKDOWN.search(s)], page
    texts = [html.unescape(ESCAPE.sub(r"\1", s)).lower() for s in sources]
    assert not [(raw, s) for s in texts for raw in IN_TEXT if raw in s], page
    assert not [(raw, s) for s in charts for raw in RAW_PLOTLY if raw in s.lower()], page
    return " ".join(sources), " ".join(charts)


def shown(field: str) -> str:
    return markdown_text(hostile(field))


def charted(field: str) -> str:
    return hostile(field).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def test_hostile_text_in_a_run_is_plain_text_on_every_page(open_app, hostile_runs, healthy):
    seen, charts = {}, {}
    for run, pages in ((HOSTILE_RUN, CLAIMS_PAGES), (WATCHED_RUN, WATCHED_PAGES)):
        for page in pages:
            at = open_app(f"dashboard/{page}.py")
            at.session_state["replay_run"] = run
            at.run()
            healthy(at)
            seen[run, page], charts[run, page] = assert_plain(at, f"{page} on {run}")
    # each field reached a page, escaped: the checks above looked at it
    assert f"Viewing saved run **{markdown_text(HOSTILE_RUN)}**" in seen[HOSTILE_RUN, "train"]
    assert shown("message") in seen[HOSTILE_RUN, "train"] and shown("optimizer") in seen[HOSTILE_RUN, "train"]
    assert shown("optimizer") in seen[HOSTILE_RUN, "adam"]
    specialization = seen[HOSTILE_RUN, "specialization"]
    assert all(
        shown(field) in specialization
        for field in ("reason decoder.0.cross 0", "kind decoder.0.cross 1", "shared", "category")
    )
    assert all(shown(field) in seen[HOSTILE_RUN, "story"] for field in ("kind decoder.0.cross 3", "category"))
    assert charted("reason decoder.0.cross 0") in charts[HOSTILE_RUN, "specialization"]
    assert charted("token") in charts[HOSTILE_RUN, "attention"]
    assert markdown_text("www.evil.example") in seen[WATCHED_RUN, "train"]  # its optimizer_name, a class name
    assert shown("watched message") in seen[WATCHED_RUN, "train"]
    assert charted("metric") in charts[WATCHED_RUN, "train"]
    assert charted("layer") in charts[WATCHED_RUN, "adam"] and charted("layer") in charts[WATCHED_RUN, "attention"]
    assert charted("reason decoder.0.cross 0") in charts[HOSTILE_RUN, "runs"]  # the compared runs' heads


def test_study_labels_and_claims_files_are_plain_text(open_app, hostile_runs, healthy):
    at = open_app("dashboard/seeds.py")
    healthy(at)
    assert_plain(at, "seeds")
    assert hostile("study label") in at.dataframe[0].value["Heads"].iloc[0]  # a table cell: shown as typed
    buffer = io.StringIO()
    csv.writer(buffer).writerows([["text", "verdict", "reason"], [hostile("claim"), "", ""]])
    at = open_app("dashboard/runs.py")
    name = re.sub(r"[/\\]", "_", hostile("file")) + ".csv"
    at.file_uploader(key="claims_upload").upload(name, buffer.getvalue().encode(), "text/csv").run()
    healthy(at)
    sources, _ = assert_plain(at, "runs, a claims file")
    assert markdown_text(name) in sources
    buffer = io.StringIO()
    csv.writer(buffer).writerows([["text", "verdict", "reason"], ["Flu, flu test, $40", hostile("verdict"), ""]])
    at.file_uploader(key="claims_upload").upload("claims.csv", buffer.getvalue().encode(), "text/csv").run()
    healthy(at)
    sources, _ = assert_plain(at, "runs, a claims file with a hostile verdict")
    assert markdown_text(hostile("verdict").upper()) in sources  # as the file's reader wrote it back


def test_the_html_report_holds_no_link_or_image_from_a_run(hostile_runs):
    snap = get_engine().replay(HOSTILE_RUN)
    page = report.html_report(snap, None, measurement.latest_measurement(snap))
    # the figures' JSON as plotly.js reads it: plotly writes '<' as \u003c, '/' as \u002f and '"' as \"
    scripts_too = re.sub(r"\\u([0-9a-f]{4})", lambda code: chr(int(code[1], 16)), page).replace('\\"', '"')
    for raw in ('<a href="https://evil.example', '<img src="https://tracker.example', '<b style="font-size:90px'):
        assert raw not in scripts_too
    # our bold around the label, and every character of the reason in the label and the evidence as typed (** too)
    reason = html.escape(hostile("reason decoder.0.cross 0"))
    assert f"<b>Head 1: {reason} specialist.</b> Only {reason} needs it" in page
    assert html.escape(hostile("message")) in page
