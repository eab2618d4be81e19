"""The package reads a cell's training settings as typed attributes (``cell.training``, a
:class:`cobench.grid.spec.CellTraining`), never by string key: a key read restates a default the
settings own, and a typo in it is found only when the line runs. Flattening a stored result into a
row (``store/results.py``'s ``flat_row``) reads the file as it was written, and is the one exception."""

from __future__ import annotations

import ast
from pathlib import Path

import cobench

PACKAGE = Path(cobench.__file__).parent
#: (file, function) pairs that read stored result files as written
READERS_OF_STORED_FILES = {("store/results.py", "flat_row")}


def is_training(node: ast.expr, aliases: set[str]) -> bool:
    """A training config: a name ``training`` or an alias of one, ``X.training``, ``X["training"]``."""
    if isinstance(node, ast.Name):
        return node.id == "training" or node.id in aliases
    if isinstance(node, ast.Attribute):
        return node.attr == "training"
    return isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and node.slice.value == "training"


def key_reads(source: str) -> list[tuple[str, int, str]]:
    """(function, line, expression) of each ``T["key"]`` or ``T.get("key")`` on a training config ``T``."""
    found = []
    for fn in ast.walk(ast.parse(source)):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        nodes = list(ast.walk(fn))
        aliases: set[str] = set()
        for n in nodes:  # t = cell.training; parts, training = ..., self.training
            if isinstance(n, ast.Assign) and len(n.targets) == 1:
                pairs = (
                    zip(n.targets[0].elts, n.value.elts)
                    if isinstance(n.targets[0], ast.Tuple) and isinstance(n.value, ast.Tuple)
                    else [(n.targets[0], n.value)]
                )
                aliases |= {t.id for t, v in pairs if isinstance(t, ast.Name) and is_training(v, aliases)}
        for n in nodes:
            subscript = (
                isinstance(n, ast.Subscript)
                and isinstance(n.ctx, ast.Load)
                and isinstance(n.slice, ast.Constant)
                and n.slice.value != "training"
                and is_training(n.value, aliases)
            )
            get = (
                isinstance(n, ast.Call)
                and isinstance(n.func, ast.Attribute)
                and n.func.attr == "get"
                and bool(n.args)
                and isinstance(n.args[0], ast.Constant)
                and is_training(n.func.value, aliases)
            )
            if subscript or get:
                found.append((fn.name, n.lineno, ast.unparse(n)))
    return found


def test_no_string_key_read_of_a_training_config_in_the_package():
    reads = [
        f"{path.relative_to(PACKAGE)}:{line} {expr} (in {fn})"
        for path in sorted(PACKAGE.rglob("*.py"))
        for fn, line, expr in key_reads(path.read_text())
        if (path.relative_to(PACKAGE).as_posix(), fn) not in READERS_OF_STORED_FILES
    ]
    assert reads == [], "read the typed settings (cell.training) instead:\n" + "\n".join(reads)


def test_the_finder_sees_direct_reads_gets_and_aliases():
    source = (
        "def f(cell, training):\n"
        "    t = cell.training\n"
        "    a, b = 1, cell.training\n"
        "    return training['epochs'], cell.training.get('amp', 'off'), t['lr_max'], b['clamp'], model.training\n"
    )
    assert [expr for _, _, expr in key_reads(source)] == [
        "training['epochs']",
        "cell.training.get('amp', 'off')",
        "t['lr_max']",
        "b['clamp']",
    ]
