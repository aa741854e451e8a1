"""The package's shape, as docs/CONTRACTS.md draws it: the pipeline's stages import only stages below
them, no module imports another's private names, and every module is small enough to read.

Read from the source with `ast` (nothing is imported). Every import counts, those inside functions and
those under `if TYPE_CHECKING:` too: a stage that needs a type from a later one takes a Protocol of what
it uses instead (`cnnbench.callbacks.Training`)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "cnnbench"

# The stages from the bottom up (docs/CONTRACTS.md, "The pipeline in the tree"). A module may import from its
# own stage and the ones before it, never from one after it.
LAYERS = [
    ("errors", "store.files"),  # one-line errors, and the one atomic write every file goes through
    ("registry",),
    ("losses", "optim", "models", "data", "metrics", "callbacks"),  # the families of the registry
    ("spec",),
    ("engine",),
    ("store",),
    ("analysis",),
    ("runs",),
    ("report",),
    ("api",),
    ("cli",),
]
STAGE = {name: i for i, names in enumerate(LAYERS) for name in names}
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _imports(name: str) -> list[tuple[str, str, int]]:
    """(imported module, imported name or "", line) for every cnnbench import of module `name`."""
    path = MODULES[name]
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "cnnbench":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.append((sub, "", node.lineno) if sub in MODULES else (target, alias.name, node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name, "", node.lineno) for a in node.names if a.name.split(".")[0] == "cnnbench"]
    return out


def _stage(module: str) -> int | None:
    """The stage of the longest entry of LAYERS that `module` is or lies in (None for the package root)."""
    parts = module.split(".")[1:]
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in STAGE:
            return STAGE[".".join(parts[:n])]
    return None


def test_every_top_level_module_and_package_has_a_stage():
    tops = {n.split(".")[1] for n in MODULES if n != "cnnbench"}
    assert tops - set(STAGE) == set(), "a new top-level module: give it a stage in LAYERS and in docs/CONTRACTS.md"


def test_no_stage_imports_a_later_one():
    upward = []
    for name in MODULES:
        mine = _stage(name)
        for target, _, line in _imports(name):
            theirs = _stage(target)
            if mine is not None and theirs is not None and theirs > mine:
                upward.append(f"{MODULES[name].relative_to(PACKAGE)}:{line} imports {target}")
    assert upward == []


def test_no_import_cycles():
    graph = {name: {t for t, _, _ in _imports(name) if t in MODULES and t != name} for name in MODULES}
    # a package's __init__ that re-exports its own modules is not a cycle with them: drop parent -> child arrows
    for name, targets in graph.items():
        graph[name] = {t for t in targets if not t.startswith(name + ".")}
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for t in sorted(graph[node]):
            if state.get(t) == "open":
                cycles.append(" -> ".join([*stack[stack.index(t):], t]))
            elif t not in state:
                visit(t, stack)
        stack.pop()
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
    assert cycles == []


def test_no_module_imports_another_modules_private_names():
    private = [f"{MODULES[name].relative_to(PACKAGE)}:{line} imports {target}.{what}"
               for name in MODULES for target, what, line in _imports(name)
               if what.startswith("_") and not what.startswith("__") and target != name]
    assert private == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_is_small_enough_to_hold_in_your_head(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name}: {lines} lines; split it by job"


def test_every_module_says_its_job():
    missing = [name for name, path in MODULES.items() if ast.get_docstring(ast.parse(path.read_text())) is None]
    assert missing == []
