"""An empty directory option or key names itself, before any training, in both commands that train."""

from __future__ import annotations

import pytest

from tests.conftest import cli_run
from tests.leaderboard.conftest import lb_cli

BOARD = """\
[leaderboard]
title = "t"
{results_dir}

[grid]
datasets = ["digits"]
models = ["small-cnn"]
methods = ["fgsm"]
"""


@pytest.mark.parametrize("flag", ["--results-dir", "--data-dir"])
def test_run_names_the_empty_option(tmp_path, flag):
    out = cli_run(["run", "--methods", "fgsm", "--epochs", "1", "--results-dir", str(tmp_path / "res"), flag, ""])
    assert out.exit_code == 2 and f"{flag} is empty; name a directory" in out.output
    assert not (tmp_path / "res").exists()


def test_leaderboard_build_names_the_empty_option_or_key(tmp_path):
    toml = tmp_path / "b.toml"
    toml.write_text(BOARD.format(results_dir=""))
    out = lb_cli(["build", str(toml), "--data-dir", ""])
    assert out.exit_code == 2 and "--data-dir is empty; name a directory" in out.output
    out = lb_cli(["build", str(toml), "--results-dir", ""])  # a board's results live where its TOML says
    assert out.exit_code == 2 and "No such option '--results-dir'" in out.output
    toml.write_text(BOARD.format(results_dir='results_dir = ""'))
    out = lb_cli(["build", str(toml)])
    assert (
        out.exit_code == 2
        and "[leaderboard] results_dir must be a path relative to the TOML file, got ''" in out.output
    )
    assert not (tmp_path / "results").exists()
