"""Shared fixtures: hand-built snapshots for the figure tests, and an isolated engine for the app tests."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
# `pytest` (not only `python -m pytest`) must import engine/ and dashboard/ from the repository root.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine.telemetry import (  # noqa: E402
    AttentionPoint,
    EvalPoint,
    OptimPoint,
    OptimStats,
    ProbeClaim,
    Series,
    Snapshot,
)

if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test`: two workers share the cores, one torch thread each
    import torch

    torch.set_num_threads(1)

CLASSES = ("VALID", "MEDICAL", "DOSAGE", "COST", "ADMIN")
NAMES = ("encoder.0.self", "decoder.0.self", "decoder.0.cross")
PROBE = (
    ProbeClaim(
        "Diabetes patient, Metformin 500mg, $150",
        "VALID",
        ("diabetes", "patient", "metformin", "500mg", "$150"),
        ("DIAG", "DIAG", "DRUG", "DOSE", "COST"),
    ),
    # a repeated token: heatmap axes must keep both
    ProbeClaim(
        "Flu, flu test, $9,000",
        "COST",
        ("flu", "flu", "test", "$9,000", "x", "y", "z"),
        ("DIAG", "PROC", "PROC", "COST", "O", "O", "O"),
    ),
)
PADDED = 9  # probe tensors are padded beyond every claim's token count


def build_snapshot(
    steps: int = 3000, optimizer: str = "adam", run_id: str = "run-1", status: str = "running", loss_scale: float = 1.0
) -> Snapshot:
    rng = np.random.default_rng(0)
    adam = optimizer == "adam"
    loss_steps = tuple(range(1, steps + 1))
    losses = tuple(float(loss_scale * 2.3 * np.exp(-s / 500) + 0.05 + 0.02 * rng.random()) for s in loss_steps)
    evals = tuple(
        EvalPoint(
            step=s,
            seconds=s / 50,
            train_loss=2.0 * np.exp(-s / 500),
            heldout_loss=loss_scale * np.exp(-s / 500),
            train_accuracy=min(1.0, s / steps),
            heldout_accuracy=min(1.0, s / steps * 0.9),
            train_per_class=dict.fromkeys(CLASSES, 0.5),
            heldout_per_class={**dict.fromkeys(CLASSES, 0.4), "ADMIN": float("nan")},
        )
        for s in range(0, steps + 1, 100)
    )

    def stats(scale: float) -> OptimStats:
        return OptimStats(
            grad_norm=scale,
            step_norm=scale / 10,
            mean_abs_step=scale / 100,
            mean_abs_m=scale / 1000 if adam else None,
            mean_sqrt_v=scale / 500 if adam else None,
        )

    optim = tuple(
        OptimPoint(
            step=s,
            heads={n: tuple(stats(1 + h + s / 1000) for h in range(4)) for n in NAMES},
            groups={"encoder.0": stats(1.0)},
        )
        for s in range(1, steps + 1, 5)
    )
    shapes = {
        "encoder.0.self": (len(PROBE), 4, PADDED, PADDED),
        "decoder.0.self": (len(PROBE), 4, 2, 2),
        "decoder.0.cross": (len(PROBE), 4, 2, PADDED),
    }
    attention = tuple(
        AttentionPoint(
            step=s, weights={n: rng.dirichlet(np.ones(shape[-1]), size=shape[:-1]) for n, shape in shapes.items()}
        )
        for s in (0, 1, 10, 100, steps)
    )
    return Snapshot(
        run_id=run_id,
        status=status,
        step=steps,
        total_steps=steps,
        seconds=steps / 50,
        steps_per_second=50.0,
        eta_seconds=0.0,
        config={
            "optimizer": optimizer,
            "lr": 0.003 if adam else 0.1,
            "batch_size": 32,
            "seed": 0,
            "steps": steps,
            "warmup_steps": 10,
            "schedule": "cosine",
            "threads": 1,
        },
        loss=Series(loss_steps, losses),
        evals=evals,
        optim=optim,
        attention=attention,
        probe=PROBE,
        attention_names=NAMES,
        n_heads=4,
    )


@pytest.fixture(scope="session", autouse=True)
def isolated_pool_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Unsaved runs cache their pools in the user's cache folder: the tests use their own."""
    with pytest.MonkeyPatch.context() as patch:
        cache_home = tmp_path_factory.mktemp("cache-home")
        patch.setenv("XDG_CACHE_HOME", str(cache_home))
        yield cache_home


@pytest.fixture(scope="session")
def catalog():
    from data.catalog import load_catalog

    return load_catalog()


@pytest.fixture(scope="session")
def tokenizer(catalog):
    from data.tokenizer import Tokenizer

    return Tokenizer.from_catalog(catalog)


@pytest.fixture
def snapshot_factory() -> Callable[..., Snapshot]:
    return build_snapshot


@pytest.fixture
def engine_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty runs folder, and no engine shared with any other test."""
    from dashboard.engine_resource import get_engine

    runs = tmp_path / "runs"
    monkeypatch.setenv("HEADWATCH_RUNS_DIR", str(runs))
    get_engine.clear()
    yield runs
    get_engine.clear()  # on_release stops the engine's threads


@pytest.fixture
def open_app(engine_env: Path) -> Callable[..., object]:
    """AppTest of app.py on one page, already run once. Each call is a separate browser session."""
    from streamlit.testing.v1 import AppTest

    def open_page(page: str | None = None) -> AppTest:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
        if page:
            at.switch_page(page)
        return at.run()

    return open_page


def rerun_until(at: object, condition: Callable[[], bool], timeout: float = 90.0) -> None:
    """AppTest never fires `run_every`: rerun the script until `condition` holds, as a live page would."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the app"
        time.sleep(0.3)
        at.run()


@pytest.fixture
def rerun() -> Callable[..., None]:
    return rerun_until


def assert_healthy(at: object) -> None:
    """No exception in the page, and no live view that failed to draw (those only show a plain sentence)."""
    from dashboard.live import DRAW_FAILED

    assert not at.exception
    assert not [e.value for e in at.error if e.value == DRAW_FAILED]


@pytest.fixture
def healthy() -> Callable[[object], None]:
    return assert_healthy


def plotly_array(value: dict | list) -> np.ndarray:
    """A trace's array as the browser gets it: plotly sends numpy arrays base64-encoded with dtype and shape."""
    import base64

    if not isinstance(value, dict):
        return np.asarray(value)
    array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
    return array.reshape([int(n) for n in value["shape"].split(",")]) if "shape" in value else array


@pytest.fixture(scope="session")
def trained_run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One saved run of the quick recipe, trained for 300 steps once per test session (about 20 s)."""
    import time
    from dataclasses import replace

    from engine.core import Engine
    from engine.training.presets import preset

    engine = Engine(runs_dir=tmp_path_factory.mktemp("trained"))
    engine.start(replace(preset("quick"), steps=300))
    deadline = time.monotonic() + 300
    while engine.snapshot().status != "finished":
        assert engine.snapshot().status not in ("failed", "diverged"), engine.snapshot().message
        assert time.monotonic() < deadline, "the shared test run did not finish"
        time.sleep(0.2)
    return Path(engine.snapshot().run_dir)


@pytest.fixture
def saved_run(engine_env: Path, trained_run_folder: Path) -> str:
    """The session's trained run, copied into this test's runs folder; returns its run id."""
    import shutil

    shutil.copytree(trained_run_folder, engine_env / trained_run_folder.name)
    return trained_run_folder.name


@pytest.fixture
def shipped_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trained_run_folder: Path) -> Iterator[Path]:
    """In place of the studies shipped with Headwatch: one of the saved run's own recipe, three seeds, the first with
    a DOSAGE specialist; the folder it is shipped in."""
    import json

    from support import make_study, seed_result

    import engine.reports.reference_studies as references
    from dashboard import viewing

    config = json.loads((trained_run_folder / "config.json").read_text())
    measured = [seed_result(0, ("DOSAGE", None, None, None)), seed_result(1), seed_result(2)]
    folder = make_study(tmp_path / "studies" / "quick", ["--preset", "quick"], [0, 1, 2], measured, config)
    monkeypatch.setattr(references, "REFERENCE_DIR", tmp_path / "shipped")
    references.write_reference(folder)
    viewing.references.clear()
    yield tmp_path / "shipped"
    viewing.references.clear()
