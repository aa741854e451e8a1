"""The engine's shape (issue 22): modules of one job each, no private names imported across modules, and
the engine never imports the store's model files (the store depends on the engine, not back)."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "cnnbench"
FILES = [*sorted((SRC / "engine").glob("*.py")), SRC / "store" / "model_files.py"]


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module != "__future__":
            yield node.module or "", [a.name for a in node.names]


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_private_name_is_imported_from_another_module(path):
    private = [(module, name) for module, names in _imports(path) for name in names
               if name.startswith("_") and not name.startswith("__")]
    assert private == []


@pytest.mark.parametrize("path", sorted((SRC / "engine").glob("*.py")), ids=lambda p: p.name)
def test_the_engine_does_not_import_model_files_and_stays_small(path):
    assert not [m for m, _ in _imports(path) if "model_files" in m]
    assert len(path.read_text().splitlines()) <= 500
    assert ast.get_docstring(ast.parse(path.read_text())), "every module starts with a docstring saying its job"
