"""The rules of the layout (docs/DESIGN.md): shared code never names a model, and no module imports in a circle."""

from __future__ import annotations

import ast
from pathlib import Path

from genbench import CONF_DIR

PACKAGE = Path(__file__).resolve().parents[1] / "genbench"
MODEL_NAMES = {p.stem for p in (CONF_DIR / "model").glob("*.yaml")}


def modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = ast.parse(path.read_text(), filename=str(path))
    return out


def test_shared_code_names_no_model() -> None:
    """No string constant in genbench/ is a model's config name: the pipeline asks the model, never its name."""
    found = []
    for name, tree in modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in MODEL_NAMES:
                found.append(f"{name}:{node.lineno} {node.value!r}")
    assert not found, found


def imports(name: str, tree: ast.Module, known: set[str]) -> set[str]:
    """genbench modules `name` imports, at any depth (imports inside functions and modules named in strings for
    importlib count: both hide circles)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            submodules = {f"{base}.{a.name}" for a in node.names} & known
            out |= submodules
            if base in known and len(submodules) < len(node.names):  # names from the module itself
                out.add(base)
        elif isinstance(node, ast.Constant) and node.value in known:  # imported by name (importlib), e.g. FAMILIES
            out.add(node.value)
    return out - {name}


def test_no_import_circle() -> None:
    trees = modules()
    graph = {name: imports(name, tree, set(trees)) for name, tree in trees.items()}
    # a package's __init__ imports nothing of its own here, so an edge to a package is an edge to its __init__
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                raise AssertionError("import circle: " + " -> ".join(path[path.index(nxt) :] + [nxt]))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
