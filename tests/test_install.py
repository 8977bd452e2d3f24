"""Headwatch installed into a user's environment (`pip install -e .`, as `make` does): usable from any folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from headwatch.__main__ import SETTINGS, streamlit_options

HEADWATCH = Path(sys.executable).parent / "headwatch"


def run_elsewhere(folder: Path, *command: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in command], cwd=folder, capture_output=True, text=True, timeout=120)


def test_watch_imports_from_any_folder_under_both_names(tmp_path: Path) -> None:
    check = "import headwatch as h, engine.watch as w; print(h.watch is w.watch, h.HeadSlices is w.HeadSlices)"
    result = run_elsewhere(tmp_path, sys.executable, "-c", check)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True True"


def test_the_headwatch_command_is_on_the_path_and_refuses_a_runs_folder_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "runs").write_text("not a folder")
    result = run_elsewhere(tmp_path, HEADWATCH, "--runs", "runs")
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'runs'} is not a folder"


def test_the_dashboards_streamlit_settings_go_with_it_to_any_folder() -> None:
    options = streamlit_options()
    assert "--runner.postScriptGC=false" in options  # without it, viewers starve the training thread
    assert "--client.toolbarMode=viewer" in options and "--server.address=127.0.0.1" in options
    assert len(options) == sum(1 for line in SETTINGS.read_text().splitlines() if " = " in line)
