"""``[leaderboard] metrics``: a third-party evaluator's accuracy as a leaderboard column."""

from __future__ import annotations

import pytest
import torch

from cobench.api import Evaluator
from cobench.errors import ConfigError
from cobench.leaderboard.collect import ProtocolError
from cobench.leaderboard.rank import build_board
from cobench.leaderboard.render.markdown import render_markdown
from cobench.leaderboard.spec import load_leaderboard

from .conftest import lb_cli

BOARD = """\
[leaderboard]
title = "Noise"
{metrics}

[grid]
datasets = ["digits"]
models = ["small-cnn"]
methods = ["fgsm"]
eps = [8]
injections = ["none"]
seeds = [0]
evaluators = ["clean", "noise"]

[training]
epochs = 1

[evaluation]
probe_size = 32

[params.datasets.digits]
size = 8

[params.models.small-cnn]
width = 4
"""


class NoiseAccuracy(Evaluator):
    """A third-party evaluator: accuracy on test images with uniform noise of 8/255 added."""

    name = "noise"

    def evaluate(self, model, ctx):
        noise = torch.empty_like(ctx.test_x).uniform_(-8 / 255, 8 / 255, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            correct = (model((ctx.test_x + noise).clamp(0, 1)).argmax(1) == ctx.test_y).float().mean()
        return {"noise_acc": float(correct)}


@pytest.fixture
def noise_plugin(pm):
    pm.registry.components["evaluators"]["noise"] = NoiseAccuracy
    pm.registry.owners["evaluators"]["noise"] = "noise_plugin"


def write_board(root, metrics: str):
    (root / "noise.toml").write_text(BOARD.format(metrics=metrics))
    return root / "noise.toml"


def test_a_board_shows_the_metric_columns_its_toml_asks_for_and_rejects_unknown_ones(tmp_path, noise_plugin):
    toml = write_board(tmp_path, 'metrics = ["noise_acc"]')
    out = lb_cli(["build", str(toml), "--device", "cpu"])
    assert out.exit_code == 0, out.output
    md, csv, html = (tmp_path / f"noise.{ext}" for ext in ("md", "csv", "html"))
    header = next(line for line in md.read_text().splitlines() if line.startswith("| rank"))
    assert "| clean % | noise_acc % | CO rate" in header  # no empty FGSM, PGD or AutoAttack column: none reported
    assert "noise_acc_mean,noise_acc_std" in csv.read_text().splitlines()[0]
    assert 'data-key="noise_acc" data-type="num"' in html.read_text()
    write_board(tmp_path, 'metrics = ["noise_acc", "blur_acc"]')  # same grid: the stored results still count
    with pytest.raises(
        ProtocolError,
        match=r"\[leaderboard\] metrics blur_acc reported by none of its results; "
        r"they report: clean_acc, noise_acc",
    ):
        build_board(load_leaderboard(toml))
    write_board(tmp_path, "")
    assert "noise_acc" not in render_markdown(build_board(load_leaderboard(toml)))  # the built-in columns only


@pytest.mark.parametrize(
    "metrics",
    ['metrics = "noise_acc"', 'metrics = ["noise"]', 'metrics = ["clean_acc"]', 'metrics = ["noise_acc", "noise_acc"]'],
)
def test_bad_metric_lists_are_clear_errors(tmp_path, metrics):
    with pytest.raises(ConfigError, match=r"\[leaderboard\] metrics must be a list of distinct accuracy names"):
        load_leaderboard(write_board(tmp_path, metrics))
