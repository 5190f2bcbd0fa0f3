"""The one-way flow, checked on the source: stages import only what comes before them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                pkg = path.parent.relative_to(ROOT).parts
                base = ".".join(pkg[: len(pkg) - node.level + 1])
                out.add(f"{base}.{node.module}" if node.module else base)
            elif node.module:
                out.add(node.module)
    return out


def _files(pkg: str) -> list[Path]:
    return sorted((ROOT / pkg).rglob("*.py"))


@pytest.mark.parametrize("path", _files("pipeline"), ids=lambda p: str(p.relative_to(ROOT)))
def test_pipeline_never_imports_the_fronts(path: Path) -> None:
    bad = {m for m in _imports(path) if m == "api" or m.startswith("api.")}
    assert not bad, f"{path.name} imports {bad}: pipeline/ must not depend on api/"


@pytest.mark.parametrize("path", _files("models"), ids=lambda p: str(p.relative_to(ROOT)))
def test_models_import_neither_pipeline_nor_api(path: Path) -> None:
    bad = {m for m in _imports(path) if m.split(".")[0] in ("pipeline", "api")}
    assert not bad, f"{path.name} imports {bad}"


def test_mediapipe_is_imported_in_one_pipeline_module() -> None:
    users = sorted(p.name for p in _files("pipeline") if any(m.startswith("mediapipe") for m in _imports(p)))
    assert users == ["infer.py"]


def test_only_settings_reads_the_environment() -> None:
    readers = sorted(
        str(p.relative_to(ROOT)) for pkg in ("pipeline", "api", "models") for p in _files(pkg)
        if "os.environ" in p.read_text() or "getenv" in p.read_text()
    )
    assert readers == ["api/settings.py"]


def test_numba_only_in_kernels() -> None:
    users = sorted(p.name for p in _files("pipeline") if any(m.startswith("numba") for m in _imports(p)))
    assert users == ["kernels.py"]
