"""The code's layout, as the README's map of it promises: engine/ by concern, each layer importing only from the
layers below it, the model knowing nothing of claims, and files and functions short enough to read."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Lowest first: a module may import from its own layer and the layers before it, never from one after it.
LAYERS = (
    ("engine.telemetry", "engine.cache"),
    ("engine.model",),
    ("engine.runs",),
    ("engine.task",),
    ("engine.interpret",),
    ("engine.recording",),
    ("engine.training",),
    ("engine.reports",),
    ("engine.core", "engine.__main__"),
)
MAX_TOP_LEVEL_MODULES = 6
MAX_FILE_LINES, MAX_FUNCTION_LINES = 400, 50


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int | None:
    for index, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    return None


def imported_modules(path: Path) -> set[str]:
    """Every module the file imports, at its top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def engine_files() -> list[Path]:
    return sorted((ROOT / "engine").rglob("*.py"))


def test_the_engine_has_few_modules_at_its_top_and_a_docstring_for_each_package() -> None:
    top = sorted(p.name for p in (ROOT / "engine").glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top
    for package in (ROOT / "engine").iterdir():
        if package.is_dir() and any(package.glob("*.py")):
            init = package / "__init__.py"
            assert init.exists() and ast.get_docstring(ast.parse(init.read_text())), f"{package.name} says what it is"


def test_every_engine_module_belongs_to_a_layer() -> None:
    unplaced = [
        module_name(p) for p in engine_files() if module_name(p) != "engine" and layer_of(module_name(p)) is None
    ]
    assert unplaced == []


def test_no_import_runs_from_a_lower_layer_to_a_higher_one() -> None:
    upward = []
    for path in engine_files():
        importer = layer_of(module_name(path))
        for module in imported_modules(path):
            imported = layer_of(module)
            if importer is not None and imported is not None and imported > importer:
                upward.append(f"{module_name(path)} imports {module}")
    assert upward == []


def test_the_model_imports_nothing_of_claims_or_of_the_rest_of_headwatch() -> None:
    for path in (ROOT / "engine" / "model").glob("*.py"):
        own = {m for m in imported_modules(path) if m.split(".")[0] in ("data", "engine", "dashboard")}
        assert {m for m in own if not m.startswith("engine.model")} == set(), path.name


@pytest.mark.parametrize("folder", ["engine", "dashboard", "data"])
def test_files_and_functions_are_short_enough_to_read(folder: str) -> None:
    long_files, long_functions = [], []
    for path in sorted((ROOT / folder).rglob("*.py")):
        text = path.read_text()
        if text.count("\n") > MAX_FILE_LINES:
            long_files.append(f"{path.relative_to(ROOT)}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long_functions.append(f"{path.relative_to(ROOT)}: {node.name}, {length} lines")
    assert (long_files, long_functions) == ([], [])
