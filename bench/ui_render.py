"""Live-view redraw time on every page while a run trains: a real server, headless Chromium, one viewer.

Run: .venv/bin/python -m bench.ui_render [--seconds 30] [--preset default]
Presses Train (the recipe, 1,000,000 steps), then opens each page in turn for `seconds` and reads the server's
timing of every live redraw on it (HEADWATCH_RENDER_LOG: from the fragment's start to its last element, i.e. the
Python the server spends; the browser draws after that, on the viewer's machine). Prints p50 / p90 per page and over
all pages, against the targets (p50 <= 100 ms, p90 <= 300 ms), and the run's steps/s while each page was open.
"""

from __future__ import annotations

import argparse
import sys

from bench.soak import percentiles, soak

PAGES = ("Train", "Adam's memories", "Attention", "Specialization", "Inspect", "Story")
TARGET_P50_MS, TARGET_P90_MS = 100.0, 300.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--preset", default="default")
    args = parser.parse_args()
    rows, every = [], []
    with soak(args.preset) as run:
        page = run.viewers.pages[0]
        for title in PAGES:
            page.get_by_test_id("stSidebarNavLink").filter(has_text=title).click()
            page.wait_for_timeout(3000)  # the page load itself is not a live redraw
            start = run.server.render_log.stat().st_size
            first = run.server.latest_step()
            page.wait_for_timeout(args.seconds * 1000)
            _, times = run.server.render_times(start)
            last = run.server.latest_step()
            ms = [value for _, value in times]
            every += ms
            speed = (last[0] - first[0]) / (last[1] - first[1]) if first and last and last[1] > first[1] else 0.0
            rows.append((title, len(ms), *percentiles(ms), speed))
        errors = run.errors()
    print(f"{'page':<16} | {'redraws':>7} | {'p50 ms':>7} | {'p90 ms':>7} | {'steps/s':>7}")
    for title, count, p50, p90, speed in rows:
        print(f"{title:<16} | {count:>7} | {p50:>7.1f} | {p90:>7.1f} | {speed:>7.1f}")
    p50, p90 = percentiles(every)
    verdict = "met" if p50 <= TARGET_P50_MS and p90 <= TARGET_P90_MS else "NOT met"
    print(
        f"all pages: p50 {p50:.1f} ms, p90 {p90:.1f} ms (targets p50 <= {TARGET_P50_MS:.0f}, "
        f"p90 <= {TARGET_P90_MS:.0f}: {verdict})"
    )
    print(f"errors: {errors}")
    sys.exit(1 if any(errors.values()) else 0)


if __name__ == "__main__":
    main()
