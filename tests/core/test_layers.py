"""The package's layers: every import, lazy ones included, points at the same or a lower layer.

The tree reads the way data flows (CLI -> grid -> run -> store); the plugin API sits at the
bottom, the components above it, and the features with their own commands on top. A module
that imports upwards would make the tree lie about the architecture, so it fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import cobench

PACKAGE = Path(cobench.__file__).parent

#: lowest first; a unit is a top-level module (the plugin API) or a sub-package
LAYERS: list[set[str]] = [
    {"cobench", "errors", "params", "hookspecs", "options", "attacks", "atomic"},
    {"api"},
    {"kinds", "plugins"},
    {"datasets", "models", "injections", "methods", "evaluators"},  # the components
    {"grid"},  # spec, protocols, cells, resolution
    {"store"},  # result files, digests, provenance, consistency, weights, tables
    {"run", "loggers"},  # the runner and training loop; run loggers (resolved like cells)
    {"executors"},  # run cells somewhere: they call the run stage and write through the store
    {"cli", "testing"},
    {"leaderboard", "boundary", "__main__"},  # features that add commands to the CLI
]
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def unit_of(module: str) -> str:
    parts = module.split(".")
    return "cobench" if len(parts) == 1 else parts[1]


def imports_of(path: Path) -> list[tuple[str, int]]:
    """Every cobench module ``path`` imports (``from cobench import x`` counts as ``cobench.x``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "cobench":
            if node.module == "cobench":
                found += [(f"cobench.{alias.name}", node.lineno) for alias in node.names]
            else:
                found.append((node.module, node.lineno))
        elif isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names if alias.name.split(".")[0] == "cobench"]
    return found


def modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] == "templates":
            continue
        out.append((".".join(("cobench", *relative.with_suffix("").parts)).removesuffix(".__init__"), path))
    return out


def test_every_unit_has_a_layer():
    units = {unit_of(module) for module, _ in modules()}
    assert units - RANK.keys() == set(), "add the new module or package to LAYERS"


def upward_imports(found: list[tuple[str, Path]]) -> list[str]:
    upward = []
    for module, path in found:
        own = unit_of(module)
        for target, line in imports_of(path):
            other = unit_of(target)
            if other in {"hookimpl", "__version__"}:  # names defined in cobench/__init__.py
                other = "cobench"
            if RANK[other] > RANK[own]:
                upward.append(f"{path.name}:{line} imports {target} ({own} is below {other})")
    return upward


def test_imports_point_down_the_layers():
    assert upward_imports(modules()) == []


def test_an_upward_import_is_found_even_when_lazy(tmp_path):
    api = tmp_path / "api.py"
    api.write_text("def state():\n    from cobench.run.checkpoints import plain_state\n    return plain_state\n")
    assert upward_imports([("cobench.api", api)]) == ["api.py:2 imports cobench.run.checkpoints (api is below run)"]


def test_no_module_imports_itself_back():
    """No circle between two modules (cobench.testing and its contracts once had one)."""
    graph = {module: {target for target, _ in imports_of(path)} for module, path in modules()}
    circles = sorted(
        f"{a} <-> {b}"
        for a, targets in graph.items()
        for b in targets
        if a < b and a in graph.get(b, set()) and not a.startswith(b + ".") and not b.startswith(a + ".")
    )
    assert circles == []
