"""End to end in a real browser: start the server, press Train, watch the loss chart grow, open every page.

Saves screenshots to test-artifacts/ and the README's docs/screenshot-train.png, and prints the measured
click-to-first-point time and the live fragment's render times.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest
import torch

from bench.soak import CHROMIUM, Server, serve
from dashboard.live import DRAW_FAILED
from dashboard.untrusted import JOINER
from engine.model.transformer import ModelConfig
from engine.task.claims_model import ClaimsTransformer
from engine.training.presets import PRESETS

# Under `make test`, on one worker: one server for the file.
pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("browser")]

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
# Records every script-state change of the page, so fragment reruns can be timed from the browser's side.
WATCH_SCRIPT_STATE = """() => {
    window.__states = [];
    const app = document.querySelector("[data-testid='stApp']");
    new MutationObserver(() => window.__states.push([performance.now(), app.dataset.testScriptState]))
        .observe(app, {attributes: true, attributeFilter: ["data-test-script-state"]});
}"""
LOSS_POINTS = """() => {
    const chart = document.querySelector("[data-testid='stPlotlyChart'] .js-plotly-plot");
    const x = chart && chart.data && chart.data.length ? chart.data[0].x : null;
    if (!x) return 0;
    if (x.length !== undefined) return x.length;
    const bytes = {i1: 1, u1: 1, i2: 2, u2: 2, i4: 4, u4: 4, f4: 4, f8: 8}[x.dtype] || 8;
    return atob(x.bdata).length / bytes;  // numpy arrays arrive base64-encoded
}"""


def need_chromium() -> None:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: CI must run the browser test (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is missing (install it with apt-get install chromium)")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    need_chromium()
    tmp = tmp_path_factory.mktemp("browser")
    with serve(tmp) as running:
        yield running
    print("\n--- server log ---\n" + running.log_path.read_text()[-3000:])


def assert_no_exception(page) -> None:
    assert page.locator("[data-testid='stException']").count() == 0
    text = page.inner_text("body")
    assert "Traceback" not in text and DRAW_FAILED not in text


def screenshot_all(page, path: Path) -> None:
    """The page scrolls inside Streamlit's main block, not the document: grow the window to fit, then shoot."""
    height = page.evaluate("() => document.querySelector(\"[data-testid='stMain']\").scrollHeight")
    page.set_viewport_size({"width": 1440, "height": min(max(height, 1000), 8000)})
    page.wait_for_timeout(1500)  # plotly redraws at the new size
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": 1440, "height": 1000})


def open_page(page, name: str) -> None:
    page.get_by_test_id("stSidebarNavItems").get_by_role("link", name=name).click()  # pages also link each other
    page.wait_for_selector(IDLE)
    page.get_by_role("heading").first.wait_for()


def test_train_and_every_page(server: Server) -> None:
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    (ROOT / "docs").mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        started = time.monotonic()
        page.goto(server.url)
        page.get_by_role("button", name="Train").wait_for(timeout=60_000)
        page.wait_for_selector(IDLE)
        print(f"\npage load to Train button: {time.monotonic() - started:.1f} s")
        assert_no_exception(page)
        page.get_by_role("spinbutton", name="Steps").wait_for()  # widgets draw after the page's first paint
        page.screenshot(path=str(ARTIFACTS / "train-idle.png"))

        page.get_by_test_id("stSelectbox").filter(has_text="Recipe").click()
        page.get_by_role("option", name="quick").click()
        # the recipe refills the form in a rerun: wait for it, or Train submits the old values
        expect(page.get_by_role("spinbutton", name="Batch size")).to_have_value(str(PRESETS["quick"].batch_size))
        page.get_by_role("spinbutton", name="Steps").fill("300")
        page.get_by_role("spinbutton", name="Steps").press("Tab")
        page.evaluate(WATCH_SCRIPT_STATE)
        clicked = time.monotonic()
        page.get_by_role("button", name="Train").click()
        page.wait_for_function(LOSS_POINTS, polling=50, timeout=60_000)
        first_point = time.monotonic() - clicked
        first = page.evaluate(LOSS_POINTS)
        page.wait_for_function(f"() => ({LOSS_POINTS})() > {first}", polling=100, timeout=60_000)
        print(f"Train click to first loss point in the browser: {first_point:.2f} s ({first} points)")
        page.get_by_text("Finished").first.wait_for(timeout=120_000)
        page.wait_for_selector(IDLE)
        assert_no_exception(page)
        ended = page.get_by_text("Finished 300 steps").first.inner_text()
        assert "of held-out claims right" in ended  # the final accuracy, and whether it beat chance, in words
        page.screenshot(path=str(ROOT / "docs" / "screenshot-train.png"))
        screenshot_all(page, ARTIFACTS / "train.png")

        states = page.evaluate("() => window.__states")
        runs = [b[0] - a[0] for a, b in pairwise(states) if a[1] == "running" and b[1] == "notRunning"]
        if runs:
            print(
                f"script/fragment reruns while training: {len(runs)}, median {statistics.median(runs):.0f} ms, "
                f"max {max(runs):.0f} ms (browser-side, script start to finish)"
            )

        open_page(page, "Adam's memories")
        page.get_by_role("button", name="Race SGD against this run").click()
        page.get_by_text("What the measured curves show: At step").wait_for(timeout=60_000)
        page.get_by_role("button", name="Race SGD against this run").and_(page.locator(":enabled")).wait_for(
            timeout=120_000
        )  # enabled again: the race has finished
        page.wait_for_function("() => document.querySelectorAll(\"[data-testid='stPlotlyChart']\").length >= 5")
        assert_no_exception(page)
        screenshot_all(page, ARTIFACTS / "adam.png")

        open_page(page, "Attention")
        page.wait_for_function("() => document.querySelectorAll(\"[data-testid='stPlotlyChart']\").length >= 2")
        assert_no_exception(page)
        screenshot_all(page, ARTIFACTS / "attention.png")
        browser.close()


CHARTS = "() => document.querySelectorAll(\"[data-testid='stPlotlyChart'] .js-plotly-plot\").length"
HEATMAPS = """() => [...document.querySelectorAll("[data-testid='stPlotlyChart'] .js-plotly-plot")]
    .map(chart => (chart.data || []).filter(trace => trace.type === "heatmap").length)"""


def test_inspect_story_report_and_runs(server: Server, tmp_path: Path) -> None:
    """Paste a claim, read the story of a finished run, open its HTML report offline, reopen the run from Runs."""
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.goto(server.url)
        page.get_by_role("button", name="Train").wait_for(timeout=60_000)
        page.wait_for_selector(IDLE)
        if not page.get_by_text("Finished").count():  # this test may run alone: train a quick run first
            page.get_by_test_id("stSelectbox").filter(has_text="Recipe").click()
            page.get_by_role("option", name="quick").click()
            expect(page.get_by_role("spinbutton", name="Batch size")).to_have_value(str(PRESETS["quick"].batch_size))
            page.get_by_role("button", name="Train").click()
            page.get_by_text("Finished").first.wait_for(timeout=120_000)

        open_page(page, "Inspect")
        claim = page.get_by_role("textbox", name="Claim")
        claim.fill("Appendicitis, appendectomy, $100,000 <b>urgent</b>")
        claim.press("Control+Enter")
        page.get_by_test_id("stHtml").filter(has_text="urgent").wait_for()  # the chips show the new claim
        page.wait_for_function(f"() => ({HEATMAPS})().filter(n => n === 4).length >= 2", timeout=60_000)
        page.wait_for_selector(IDLE)
        verdict = page.get_by_test_id("stMetric").filter(has_text="Verdict").get_by_test_id("stMetricValue")
        assert verdict.inner_text() in ("VALID", "INVALID")
        assert page.locator("b", has_text="urgent").count() == 0  # never rendered as bold
        assert_no_exception(page)
        screenshot_all(page, ARTIFACTS / "inspect.png")

        open_page(page, "Story")
        page.get_by_role("heading", name="After: which heads became specialists").wait_for(timeout=60_000)
        page.wait_for_function(f"() => ({CHARTS})() >= 4", timeout=60_000)
        assert_no_exception(page)
        story_charts = page.evaluate(CHARTS)  # 5 when an SGD race ran beside this run
        screenshot_all(page, ARTIFACTS / "story.png")
        with page.expect_download(timeout=60_000) as download:
            page.get_by_role("button", name="Download this story as an HTML report").click()
        report = tmp_path / "report.html"
        download.value.save_as(report)
        offline = browser.new_page()
        offline.goto(report.as_uri())
        # every figure drawn by the embedded plotly.js: an svg inside each plotly div, with no network
        drawn = "[...document.querySelectorAll('.plotly-graph-div')].filter(div => div.querySelector('.main-svg'))"
        offline.wait_for_function(f"() => {drawn}.length >= {story_charts}")
        figures_in_report = offline.evaluate("() => document.querySelectorAll('.plotly-graph-div').length")
        print(f"\nHTML report: {report.stat().st_size / 2**20:.1f} MB, {figures_in_report} plotly figures")
        assert figures_in_report == story_charts
        assert "After: which heads became specialists" in offline.inner_text("body")
        assert "Some claims, judged by this model" in offline.inner_text("body")  # the Story's table too
        offline.close()

        open_page(page, "Specialization")
        page.get_by_text("Verdict at step").wait_for(timeout=60_000)
        page.wait_for_function(f"() => ({CHARTS})() >= 4", timeout=60_000)
        assert_no_exception(page)
        screenshot_all(page, ARTIFACTS / "specialization.png")

        open_page(page, "Across seeds")
        page.get_by_role("button", name="Train 5 seeds").wait_for(timeout=60_000)
        assert_no_exception(page)
        screenshot_all(page, ARTIFACTS / "seeds.png")

        open_page(page, "Runs")
        page.get_by_role("button", name="Open read-only").click()
        page.get_by_text("(read-only)").first.wait_for()
        page.get_by_role("button", name="Story report (HTML)").wait_for(timeout=60_000)
        page.wait_for_selector(IDLE)
        assert_no_exception(page)
        screenshot_all(page, ARTIFACTS / "runs.png")
        a_link_opens_the_same_run(browser, page.url)
        exports_load_as_promised(page, server, tmp_path)
        too_few_claims_are_refused_up_front(page, tmp_path)
        page.get_by_role("link", name="See it on Story").click()
        page.get_by_role("heading", name="The story of this run").wait_for()
        page.get_by_text("(read-only)").first.wait_for()
        open_page(page, "Train")  # every page honours the reopened run, Train too
        page.get_by_text("(read-only)").first.wait_for()
        page.get_by_role("button", name="Back to the live run").click()
        expect(page.get_by_text("(read-only)")).to_have_count(0)  # old elements stay on screen during a rerun
        browser.close()


def a_link_opens_the_same_run(browser, url: str) -> None:
    """The address of a page showing a saved run, opened by someone else (a new session), shows that run."""
    assert "?run=" in url
    other = browser.new_page(viewport={"width": 1440, "height": 1000})
    other.goto(url.replace("/runs?", "/story?"))
    other.get_by_text("(read-only)").first.wait_for(timeout=60_000)
    other.get_by_role("heading", name="The story of this run").wait_for()
    other.wait_for_selector(IDLE)
    assert_no_exception(other)
    other.close()


def exports_load_as_promised(page, server: Server, tmp_path: Path) -> None:
    """The metrics CSV has every training step; the weights load with the line the Runs page gives."""
    with page.expect_download(timeout=60_000) as download:
        page.get_by_role("button", name="Metrics (CSV)").click()
    metrics = tmp_path / download.value.suggested_filename
    download.value.save_as(metrics)
    rows = list(csv.reader(metrics.open()))
    run_id = metrics.name.removesuffix("-metrics.csv")
    steps = json.loads((server.runs_dir / run_id / "config.json").read_text())["steps"]
    assert rows[0][:3] == ["step", "seconds", "train_loss"]
    assert [int(row[0]) for row in rows[1:]] == list(range(steps + 1))  # every training step, not evaluations only
    with page.expect_download(timeout=60_000) as download:
        page.get_by_role("button", name="Weights (PyTorch state_dict)").click()
    weights = tmp_path / download.value.suggested_filename
    download.value.save_as(weights)
    config = json.loads((server.runs_dir / weights.stem / "config.json").read_text())
    model = ClaimsTransformer(ModelConfig.from_dict(config["model"]))
    model.load_state_dict(torch.load(weights, weights_only=True))


def too_few_claims_are_refused_up_front(page, tmp_path: Path) -> None:
    """A claims file too small to train on is refused before anything starts, in words, with no class name."""
    small = tmp_path / "small.csv"
    small.write_text("text\n" + "".join(f'"Diabetes, metformin {500 + n} mg, $40"\n' for n in range(10)))
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(small))
    page.get_by_text("10 claims read from small.csv").wait_for(timeout=60_000)
    page.get_by_role("button", name="Train a new run on these claims").click()
    page.get_by_text("could be labelled").first.wait_for(timeout=60_000)
    body = page.inner_text("body")
    assert "Training started" not in body and "CsvProblem" not in body
    assert_no_exception(page)


SHOWN_STEP = r"""() => {
    const shown = document.body.innerText.match(/Step ([\d,]+) ·/);
    return shown ? Number(shown[1].replaceAll(",", "")) : 0;
}"""


def test_a_model_training_in_another_process_is_followed_live(server: Server) -> None:
    """Someone's own loop (the example) trains in its own process into the server's runs folder; the dashboard
    lists it, opens it, and its loss chart grows while the loop runs; Attention shows its heads."""
    from playwright.sync_api import sync_playwright

    loop = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "examples" / "watch_transformer.py"),
            "--out",
            str(server.runs_dir / "toy-watched"),
            "--steps",
            "100000",
        ],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not (server.runs_dir / "toy-watched" / "status.json").exists():  # its first step is saved
            assert loop.poll() is None and time.monotonic() < deadline, "the watched loop did not start"
            time.sleep(0.2)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.goto(server.url)
            page.get_by_role("button", name="Train").wait_for(timeout=60_000)
            open_page(page, "Runs")
            page.get_by_test_id("stSelectbox").filter(has_text="Run").first.click()
            page.get_by_role("option", name="toy-watched").click()
            page.get_by_role("button", name="Open read-only").click()
            page.get_by_text("(read-only)").first.wait_for()
            open_page(page, "Train")
            page.get_by_text("Training elsewhere (headwatch.watch)").first.wait_for(timeout=60_000)
            page.wait_for_function(f"() => ({LOSS_POINTS})() > 0", timeout=60_000)
            first = page.evaluate(SHOWN_STEP)  # the chart keeps at most 400 points: the step says it grows
            page.wait_for_function(f"() => ({SHOWN_STEP})() > {first}", polling=500, timeout=60_000)
            assert_no_exception(page)
            screenshot_all(page, ARTIFACTS / "watched-train.png")
            open_page(page, "Attention")
            page.wait_for_function(f"() => ({HEATMAPS})().filter(n => n === 4).length === 2", timeout=60_000)
            assert "Positions are numbered from 1" in page.inner_text("body")
            assert_no_exception(page)
            screenshot_all(page, ARTIFACTS / "watched-attention.png")
            browser.close()
    finally:
        loop.kill()
        loop.wait()


# Anything a run's text could have become: a link (Markdown's or plotly's, an SVG link names its target xlink:href)
# or an image fetched from elsewhere.
PLANTED = (
    'a[href*="evil.example"], a[*|href*="evil.example"], img[src*="tracker.example"], image[*|href*="tracker.example"]'
)
DRAWN = "() => [...document.querySelectorAll('.js-plotly-plot')].every(chart => chart.querySelector('.main-svg'))"


def test_text_from_a_hostile_run_is_never_a_link_or_an_image(trained_run_folder: Path, tmp_path: Path) -> None:
    """A claims run and a watched run whose every text field holds links, images and markup, served on their own:
    on every page that shows them, the browser holds no link to them and no image from them."""
    from playwright.sync_api import sync_playwright
    from test_app_markup import HOSTILE_RUN, WATCHED_RUN, spoil_claims_run, watched_run

    need_chromium()
    with serve(tmp_path) as server, sync_playwright() as playwright:
        spoil_claims_run(shutil.copytree(trained_run_folder, server.runs_dir / HOSTILE_RUN))
        watched_run(server.runs_dir / WATCHED_RUN)
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.goto(server.url)
        page.get_by_role("button", name="Train").wait_for(timeout=60_000)
        for run, pages in (
            (HOSTILE_RUN, ("Train", "Adam's memories", "Attention", "Specialization", "Story")),
            (WATCHED_RUN, ("Train", "Adam's memories", "Attention")),
        ):
            open_page(page, "Runs")
            page.get_by_test_id("stSelectbox").filter(has_text="Run").first.click()
            page.get_by_role("option", name=run).click()
            page.get_by_role("button", name="Open read-only").click()
            page.get_by_text("(read-only)").first.wait_for()
            for name in ("Runs", *pages):
                if name != "Runs":
                    open_page(page, name)
                page.wait_for_selector(IDLE)
                page.wait_for_function(DRAWN, timeout=60_000)
                assert_no_exception(page)
                planted = page.locator(PLANTED).evaluate_all("found => found.map(element => element.outerHTML)")
                assert not planted, f"{name} on {run}: {planted}"
                if name == "Train":  # the run's own message, shown as typed (with invisible word joiners)
                    shown = page.inner_text("body").replace(JOINER, "")
                    assert "message [click](https://evil.example) ![pixel](https://tracker.example/p.png)" in shown
        browser.close()
