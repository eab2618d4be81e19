"""A tiny leaderboard (2 methods x 2 eps x {none, low-freq} x 2 seeds, 2 epochs on 8x8 digits),
trained once per test session; each test gets its own copy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

TINY_TOML = """\
[leaderboard]
title = "Tiny test leaderboard"
description = "Two fast methods, two epochs."

[grid]
datasets = ["digits"]
models = ["small-cnn"]
methods = ["fgsm", "n-fgsm"]
eps = [8, 16]
injections = ["none", "low-freq"]
betas = [8]
seeds = [0, 1]
evaluators = ["clean", "fgsm", "pgd", "co"]

[training]
epochs = 2
batch_size = 64

[evaluation]
probe_size = 32

[params.datasets.digits]
size = 8

[params.models.small-cnn]
width = 4

[params.evaluators.pgd]
steps = 2
max_samples = 64

[params.evaluators.co]
steps = 2
"""


def lb_cli(args: list[str]):
    """``cobench leaderboard ARGS`` through the real CLI, with plugin commands loaded."""
    from cobench.cli import _load_plugin_commands
    from tests.conftest import cli_run

    _load_plugin_commands()
    return cli_run(["leaderboard", *args])


@pytest.fixture
def tables_only(monkeypatch):
    """Renders without the figures, for tests that check rows, tables and messages only: drawing the
    tiny board's five PNGs is about 95 % of a render (tests/leaderboard/test_plots.py, test_render.py
    and test_html.py check the figures)."""
    from cobench.leaderboard.render.text import planned_plots

    blank = b"\x89PNG\r\n\x1a\n"  # the pages still link every planned figure
    monkeypatch.setattr(
        "cobench.leaderboard.outputs.render_plots", lambda board: {name: blank for name, _ in planned_plots(board)}
    )


@pytest.fixture(scope="session")
def built_tiny(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny-leaderboard")
    (root / "tiny.toml").write_text(TINY_TOML)
    out = lb_cli(["build", str(root / "tiny.toml"), "--device", "cpu"])
    assert out.exit_code == 0, out.output
    return root


@pytest.fixture
def tiny(built_tiny, tmp_path) -> Path:
    """A private copy of the built tiny leaderboard; returns the path of its TOML."""
    dest = tmp_path / "leaderboards"
    shutil.copytree(built_tiny, dest)
    return dest / "tiny.toml"


def result_paths(toml: Path) -> list[Path]:
    return sorted((toml.parent / "results" / toml.stem).rglob("*.json"))


def find_result(toml: Path, method: str, eps: float, injection: str = "none", seed: int | None = None) -> list[Path]:
    out = []
    for p in result_paths(toml):
        cfg = json.loads(p.read_text())["config"]
        if (cfg["method"]["name"], cfg["eps"], cfg["injection"]["name"]) == (method, eps, injection) and (
            seed is None or cfg["seed"] == seed
        ):
            out.append(p)
    return out


def edit_result(path: Path, fn) -> None:
    """Change a stored result as if cobench had written it so (its digest recomputed): for tests
    of aggregation and rendering; tests of the edit detection write the file themselves."""
    from cobench.store.digest import with_digest

    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(with_digest(data), indent=2))
