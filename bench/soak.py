"""Soak: one live training run watched by 1 and by 3 browsers in turn, for N minutes, through the real server.

Run: .venv/bin/python -m bench.soak [--minutes 10] [--phase 30] [--preset default] [--browsers-compete]
Starts the `headwatch` command on a free port of 127.0.0.1 with a temporary runs folder, opens the Train page in
headless Chromium, presses Train (the recipe with 1,000,000 steps, so it trains for the whole soak), then, for N
minutes after the run's first step, alternates phases: 1 viewer, 3 viewers (two more browser contexts open the
page), 1 viewer (those two contexts are closed while the run trains), and so on. Prints per phase the run's steps/s
(from the run's own metrics.jsonl: steps and training seconds, so page loads between phases do not count), the
server's RSS and CPU, and the CPU that other work on the machine took (in % of one core; it makes the steps/s
noisy); then the medians of both kinds of phase and their ratio (target: at least 0.8), RSS over time, and the
error counts: exceptions or "could not be drawn" in any page, uncaught JavaScript errors, tracebacks in the server
log. Exits 1 if any error was seen.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from dashboard.live import DRAW_FAILED

CHROMIUM = Path("/usr/bin/chromium")
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
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
STEPS = 1_000_000
TARGET_RATIO = 0.8  # 3 viewers' steps/s within 20% of one viewer's
# Installed in every page before Streamlit loads: counts the checks (twice a second) at which an exception box or a
# view that could not be drawn is on screen, so an error that a later rerun clears is still counted.
WATCH_FAULTS = """
window.__faults = {checks: 0, exceptions: 0, drawFailed: 0};
setInterval(() => {
    const faults = window.__faults;
    faults.checks += 1;
    if (document.querySelector("[data-testid='stException']")) faults.exceptions += 1;
    if (document.body && document.body.textContent.includes(DRAW_FAILED)) faults.drawFailed += 1;
}, 500);
""".replace("DRAW_FAILED", json.dumps(DRAW_FAILED))
# The step the page's progress caption shows ("Step 1,234 of 1,000,000 · ..."), or -1 before it is drawn.
PAGE_STEP = """() => {
    const text = document.querySelector("[data-testid='stProgress']")?.textContent || "";
    const match = text.match(/Step ([\\d,]+) of/);
    return match ? parseInt(match[1].replace(/,/g, ""), 10) : -1;
}"""


def process_cpu(pid: int) -> tuple[int, float]:
    """(parent pid, CPU seconds used so far) of a process, from /proc/PID/stat. Fields 4, 14 and 15 (parent, user and
    system time in clock ticks); the name before them may hold spaces, so count from the closing parenthesis."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds used so far by this process and everything it started (server, browser driver, browsers)."""
    processes: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                processes[int(entry.name)] = process_cpu(int(entry.name))
            except (OSError, ValueError, IndexError):  # it ended while we looked
                continue
    ours, grew = {os.getpid()}, True
    while grew:
        found = {pid for pid, (parent, _) in processes.items() if parent in ours} - ours
        ours |= found
        grew = bool(found)
    return sum(processes[pid][1] for pid in ours if pid in processes)


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs together have spent busy (not idle, not waiting for the disk), from /proc/stat."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    runs_dir: Path
    log_path: Path

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("the server has no VmRSS line")

    def cpu_seconds(self) -> float:
        return process_cpu(self.process.pid)[1]

    @property
    def render_log(self) -> Path:
        return self.log_path.with_name("render.log")

    def render_times(self, since: int = 0) -> tuple[int, list[tuple[str, float]]]:
        """(end offset, [(live view, ms)]) of the live redraws the server logged after byte offset `since`."""
        if not self.render_log.exists():
            return since, []
        with open(self.render_log, "rb") as file:
            file.seek(since)
            data = file.read()
        complete = data[: data.rfind(b"\n") + 1]
        times = [(view, float(ms)) for view, ms in (line.split() for line in complete.decode().splitlines())]
        return since + len(complete), times

    def tracebacks(self) -> int:
        return self.log_path.read_text(errors="replace").count("Traceback")

    def latest_step(self) -> tuple[int, float] | None:
        """(step, training seconds) of the newest step the run has flushed to its metrics.jsonl (about every second)."""
        if not self.runs_dir.is_dir():  # the Train press has not reached the server yet
            return None
        folders = [f for f in self.runs_dir.iterdir() if f.is_dir() and not f.name.startswith(".")]
        if len(folders) != 1 or not (folders[0] / "metrics.jsonl").exists():
            return None
        with open(folders[0] / "metrics.jsonl", "rb") as file:
            file.seek(max(0, file.seek(0, os.SEEK_END) - 256 * 1024))  # optimizer records are long: a wide tail
            lines = file.read().decode(errors="replace").splitlines()
        for line in reversed(lines):
            if '"type": "step"' in line:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # the first, cut line of the tail, or a torn last one
                    continue
                return record["step"], record["seconds"]
        return None


@contextmanager
def serve(folder: Path) -> Iterator[Server]:
    """The app as a user serves it with the installed `headwatch` command, started in `folder` (not in the
    checkout), on a free port of 127.0.0.1, with the runs folder `folder`/runs."""
    port = free_port()
    log_path = folder / "server.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [Path(sys.executable).parent / "headwatch", "--runs", str(folder / "runs"), "--port", str(port)],
            cwd=folder,
            env={**os.environ, "HEADWATCH_RENDER_LOG": str(folder / "render.log")},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                        if response.read() == b"ok":
                            break
                except OSError:
                    pass
                if process.poll() is not None:
                    raise RuntimeError(f"the server exited:\n{log_path.read_text()}")
                if time.monotonic() > deadline:
                    raise RuntimeError("the Streamlit server did not answer its health check in 60 s")
                time.sleep(0.2)
            yield Server(url, process, folder / "runs", log_path)
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@dataclass
class Viewers:
    """Browser contexts (each one a separate viewer, as separate people would be) on the Train page."""

    browser: object
    url: str
    pages: list = field(default_factory=list)
    closed_faults: dict[str, int] = field(default_factory=lambda: {"exceptions": 0, "drawFailed": 0})
    js_errors: list[str] = field(default_factory=list)

    def open(self, count: int = 1) -> list:
        """`count` new viewers, loading the page side by side (one after the other takes twice as long)."""
        pages = []
        for _ in range(count):
            context = self.browser.new_context(viewport={"width": 1440, "height": 1000})
            context.add_init_script(WATCH_FAULTS)
            page = context.new_page()
            page.on("pageerror", lambda error: self.js_errors.append(str(error)))
            page.goto(self.url, wait_until="commit")
            pages.append(page)
        for page in pages:
            page.get_by_role("button", name="Train").wait_for(timeout=90_000)
            page.wait_for_selector(IDLE, timeout=90_000)
        self.pages += pages
        return pages

    def wait_until_live(self, timeout_s: float = 90.0) -> None:
        """Every page draws the run's progress (its live view has caught up with the run)."""
        for page in self.pages:
            page.wait_for_function(f"() => ({PAGE_STEP})() > 0", timeout=timeout_s * 1000)

    def close_newest(self) -> None:
        """Close a viewer's whole browser context while the run trains (what closing a browser window does)."""
        page = self.pages.pop()
        self._add(page.evaluate("() => window.__faults"))
        page.context.close()

    def _add(self, faults: dict) -> None:
        for key in self.closed_faults:
            self.closed_faults[key] += faults[key]

    def faults(self) -> dict[str, int]:
        """Checks that saw an exception or a view that could not be drawn, over all viewers, closed ones included."""
        total = dict(self.closed_faults)
        for page in self.pages:
            faults = page.evaluate("() => window.__faults")
            for key in total:
                total[key] += faults[key]
        return total

    def steps_shown(self) -> list[int]:
        return [page.evaluate(PAGE_STEP) for page in self.pages]


def press_train(page: object, recipe: str, steps: int) -> None:
    from playwright.sync_api import expect

    from engine.training.presets import PRESETS

    if recipe != "default":
        page.get_by_test_id("stSelectbox").filter(has_text="Recipe").click()
        page.get_by_role("option", name=recipe).click()
        # the recipe refills the form in a rerun: wait for it, or Train submits the old values
        expect(page.get_by_role("spinbutton", name="Batch size")).to_have_value(str(PRESETS[recipe].batch_size))
    page.get_by_role("spinbutton", name="Steps").fill(str(steps))
    page.get_by_role("spinbutton", name="Steps").press("Tab")
    page.get_by_role("button", name="Train").click()


@dataclass
class Phase:
    viewers: int
    steps_per_second: float
    rss_mb: float
    server_cpu: float  # share of one core
    other_cpu: float  # cores busy with work that is not this soak's: it makes the steps/s noisy
    render_ms: list[float]  # server-side time of each live redraw during the phase


@dataclass
class Soak:
    server: Server
    viewers: Viewers
    phases: list[Phase] = field(default_factory=list)
    rss: list[tuple[float, float]] = field(default_factory=list)  # (seconds since start, MB)
    started: float = field(default_factory=time.monotonic)

    def sample_rss(self) -> None:
        self.rss.append((time.monotonic() - self.started, self.server.rss_mb()))

    def wait_for_steps(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.server.latest_step() is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the run wrote no step in {timeout_s:.0f} s:\n{self.server.log_path.read_text()}")
            time.sleep(0.5)

    def set_viewers(self, count: int) -> None:
        while len(self.viewers.pages) > count:
            self.viewers.close_newest()
        if len(self.viewers.pages) < count:
            self.viewers.open(count - len(self.viewers.pages))
        self.viewers.wait_until_live()

    def measure(self, viewers: int, seconds: float) -> Phase:
        """Steps per training second over `seconds`, with `viewers` pages open and live."""
        self.set_viewers(viewers)
        self.viewers.pages[0].wait_for_timeout(2000)  # page loads are settled; their cost is not the viewers'
        first, cpu_first, wall_first = self.server.latest_step(), self.server.cpu_seconds(), time.monotonic()
        others_first = machine_busy_seconds() - own_cpu_seconds()
        shown_first = self.viewers.steps_shown()
        render_from = self.server.render_log.stat().st_size if self.server.render_log.exists() else 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.sample_rss()
            self.viewers.pages[0].wait_for_timeout(min(5.0, max(deadline - time.monotonic(), 0.05)) * 1000)
        last, cpu_last, wall_last = self.server.latest_step(), self.server.cpu_seconds(), time.monotonic()
        others_last = machine_busy_seconds() - own_cpu_seconds()
        shown_last = self.viewers.steps_shown()
        # every viewer's live view kept up: its page shows a later step than at the phase's start
        stuck = [i for i, (a, b) in enumerate(zip(shown_first, shown_last, strict=True)) if b <= a]
        if stuck:
            raise RuntimeError(f"viewer(s) {stuck} stopped updating: steps shown {shown_first} -> {shown_last}")
        if first is None or last is None or last[1] <= first[1]:
            raise RuntimeError(f"the run did not advance during the phase ({first} -> {last})")
        wall = wall_last - wall_first
        _, renders = self.server.render_times(render_from)
        phase = Phase(
            viewers,
            (last[0] - first[0]) / (last[1] - first[1]),
            self.rss[-1][1],
            (cpu_last - cpu_first) / wall,
            max(others_last - others_first, 0.0) / wall,
            [ms for _, ms in renders],
        )
        self.phases.append(phase)
        return phase

    def median_steps_per_second(self, viewers: int) -> float:
        return statistics.median(p.steps_per_second for p in self.phases if p.viewers == viewers)

    def errors(self) -> dict[str, int]:
        return {
            **self.viewers.faults(),
            "jsErrors": len(self.viewers.js_errors),
            "serverTracebacks": self.server.tracebacks(),
        }


def idle_chromium(folder: Path) -> Path:
    """Chromium under the SCHED_IDLE policy: it runs only on CPU time nothing else wants. Viewers' browsers normally
    run on other machines; here they share the server's two cores, and drawing charts in software costs them more
    than the server spends on a viewer. (`nice` does not hold: Chromium sets its renderers' niceness itself; the
    policy is inherited and left alone.) So the steps/s measured are what the server's own work allows.
    Without `chrt` (util-linux), plain Chromium."""
    if shutil.which("chrt") is None:
        return CHROMIUM
    wrapper = folder / "chromium"
    wrapper.write_text(f'#!/bin/sh\nexec chrt --idle 0 {CHROMIUM} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


@contextmanager
def soak(recipe: str = "default", steps: int = STEPS, idle_browsers: bool = True) -> Iterator[Soak]:
    """A server, a browser, one viewer, and a run started from that viewer's Train button."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        raise RuntimeError(f"{CHROMIUM} is missing (apt-get install chromium)")
    with (
        tempfile.TemporaryDirectory(prefix="headwatch-soak-") as folder,
        serve(Path(folder)) as server,
        sync_playwright() as playwright,
    ):
        chromium = idle_chromium(Path(folder)) if idle_browsers else CHROMIUM
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            viewers = Viewers(browser, server.url)
            press_train(viewers.open()[0], recipe, steps)
            run = Soak(server, viewers)
            run.wait_for_steps()
            viewers.wait_until_live()
            run.started = time.monotonic()
            yield run
        finally:
            browser.close()


def percentiles(values: list[float]) -> tuple[float, float]:
    """(p50, p90); NaN for no values."""
    if not values:
        return float("nan"), float("nan")
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]


def report(run: Soak) -> None:
    print(
        f"{'phase':>5} | {'viewers':>7} | {'steps/s':>7} | {'server RSS MB':>13} | {'server CPU':>10} | "
        f"{'other work':>10} | {'redraw p50 ms':>13} | {'redraw p90 ms':>13}"
    )
    for number, phase in enumerate(run.phases, 1):
        p50, p90 = percentiles(phase.render_ms)
        print(
            f"{number:>5} | {phase.viewers:>7} | {phase.steps_per_second:>7.2f} | {phase.rss_mb:>13.0f} | "
            f"{phase.server_cpu:>10.0%} | {phase.other_cpu:>10.0%} | {p50:>13.1f} | {p90:>13.1f}"
        )
    for viewers in (1, 3):
        p50, p90 = percentiles([ms for p in run.phases if p.viewers == viewers for ms in p.render_ms])
        print(f"live redraws with {viewers} viewer(s): p50 {p50:.1f} ms, p90 {p90:.1f} ms")
    one, three = run.median_steps_per_second(1), run.median_steps_per_second(3)
    verdict = "met" if three >= TARGET_RATIO * one else "NOT met"
    print(
        f"median steps/s: 1 viewer {one:.2f}, 3 viewers {three:.2f}; ratio (3 / 1) {three / one:.3f} "
        f"(target >= {TARGET_RATIO}: {verdict})"
    )
    every = max(1, len(run.rss) // 12)
    print("server RSS over time: " + ", ".join(f"{t:.0f}s {mb:.0f}MB" for t, mb in run.rss[::every]))
    low = min(mb for _, mb in run.rss)
    print(
        f"server RSS: first {run.rss[0][1]:.0f} MB, min {low:.0f}, max {max(mb for _, mb in run.rss):.0f}, "
        f"last {run.rss[-1][1]:.0f} MB"
    )
    print(f"errors: {run.errors()}")
    for message in run.viewers.js_errors[:5]:
        print(f"  JavaScript error: {message}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--phase", type=float, default=30.0, help="seconds measured in each phase")
    parser.add_argument("--preset", default="default", help="recipe to train (default: the live demo's)")
    parser.add_argument(
        "--browsers-compete",
        action="store_true",
        help="run the browsers at normal priority (by default they only get CPU the server leaves, "
        "standing in for viewers on other machines)",
    )
    args = parser.parse_args()
    with soak(args.preset, idle_browsers=not args.browsers_compete) as run:
        end = run.started + args.minutes * 60
        viewers = 1
        # at least one phase of each kind, however short the soak
        while time.monotonic() < end or len(run.phases) < 2:
            phase = run.measure(viewers, args.phase)
            print(
                f"[{time.monotonic() - run.started:5.0f} s] {viewers} viewer(s): {phase.steps_per_second:.2f} "
                f"steps/s, server RSS {phase.rss_mb:.0f} MB, server CPU {phase.server_cpu:.0%}",
                flush=True,
            )
            viewers = 4 - viewers  # 1, 3, 1, 3, ...
        report(run)
        errors = run.errors()
    sys.exit(1 if any(errors.values()) else 0)


if __name__ == "__main__":
    main()
