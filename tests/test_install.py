"""Headwatch installed into a user's environment (`pip install -e .`, as `make` does): usable from any folder."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

from headwatch.__main__ import SETTINGS, streamlit_options

HEADWATCH = Path(sys.executable).parent / "headwatch"
ROOT = Path(__file__).resolve().parents[1]


def run_elsewhere(folder: Path, *command: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in command], cwd=folder, capture_output=True, text=True, timeout=120)


def test_watch_imports_from_any_folder_under_both_names(tmp_path: Path) -> None:
    check = (
        "import headwatch as h, engine.recording.watch as w; print(h.watch is w.watch, h.HeadSlices is w.HeadSlices)"
    )
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


def test_the_library_declares_ranges_that_hold_the_apps_exact_tested_set() -> None:
    """`pip install headwatch` beside transformers or timm keeps their torch where it is in range: the package asks
    for ranges, never requirements.txt's exact pins, and those pins (the app's tested set) fall inside them."""
    declared = [Requirement(r) for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]]
    lines = (line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines())
    tested = [Requirement(line) for line in lines if line]
    assert [str(r) for r in declared if any(s.operator in ("==", "===") for s in r.specifier)] == []
    assert sorted(r.name for r in declared) == sorted(r.name for r in tested)
    ranges = {r.name: r.specifier for r in declared}
    for requirement in tested:
        pins = [s.version for s in requirement.specifier if s.operator == "=="]
        assert all(ranges[requirement.name].contains(pin) for pin in pins), requirement


def test_the_trainer_callbacks_libraries_are_imported_only_when_asked_for() -> None:
    """Headwatch works without transformers or lightning: importing it loads neither."""
    check = (
        "import sys, headwatch; from headwatch import watch; "
        "print(sorted(name for name in ('lightning', 'transformers') if name in sys.modules))"
    )
    result = run_elsewhere(ROOT, sys.executable, "-c", check)  # this checkout's headwatch, not an installed one
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
