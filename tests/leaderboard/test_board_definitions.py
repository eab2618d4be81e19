"""The shipped CIFAR-10 boards follow their references where issue 19 found them differing."""

from __future__ import annotations

from pathlib import Path

import pytest

from cobench.grid.protocols import get_protocol
from cobench.grid.resolve import resolve
from cobench.leaderboard.spec import load_leaderboard

ROOT = Path(__file__).resolve().parents[2]
BOARDS = sorted((ROOT / "leaderboards").glob("cifar10-*.toml"))


@pytest.mark.parametrize("path", BOARDS, ids=[p.stem for p in BOARDS])
def test_every_cifar10_board_runs_three_seeds_and_shows_pgd_50_10(path):
    lb = load_leaderboard(path)
    assert len(set(lb.grid.seeds)) >= 3
    assert "pgd50_10_acc" in lb.metrics


@pytest.mark.parametrize(
    "name", ["cifar10-injected", "cifar10-low-pass-8", "cifar10-low-pass-16", "cifar10-low-pass-24"]
)
def test_co_features_boards_train_pgd_with_a_fixed_2_over_255_step(pm, name):
    cells = [
        c
        for c in resolve(load_leaderboard(ROOT / "leaderboards" / f"{name}.toml").grid, pm.registry)
        if c.method.name == "pgd"
    ]
    assert cells and all(c.method.params["step_size"] == 2 for c in cells)


def test_the_injected_board_runs_co_features_grad_align(pm):
    cells = [
        c
        for c in resolve(load_leaderboard(ROOT / "leaderboards" / "cifar10-injected.toml").grid, pm.registry)
        if c.method.name == "grad-align"
    ]
    assert {c.eps for c in cells} == {2, 4, 6, 8, 10, 12}
    assert all(c.method.params == {"alpha": 1.25, "lam": 0.2, "variant": "co-features"} for c in cells)


def test_the_elle_preset_evaluates_with_step_eps_over_4():
    assert get_protocol("elle").eval_params(8)["step_size"] == 2.0
    assert get_protocol("elle").eval_params(16)["step_size"] == 4.0


def test_the_fast_at_board_says_its_protocol_and_cites_every_published_figure():
    lb = load_leaderboard(ROOT / "leaderboards" / "cifar10-fast-at.toml")
    assert "ONE protocol, n-fgsm" in lb.description and "deliberate choice" in lb.description
    assert lb.published and all(f.source and f.differs for f in lb.published)
