"""`cobench results` names and skips files it cannot read, never aborting the listing; a
closed pipe ends it quietly; a TOML without [leaderboard] is not rendered (issue 12, Inputs)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cobench.errors import ConfigError
from cobench.grid.resolve import resolve
from cobench.grid.spec import GridSpec
from cobench.leaderboard.spec import load_leaderboard
from cobench.store.results import result_header, result_path, write_json
from tests.conftest import cli_run


@pytest.fixture
def results_dir(tmp_path, pm):
    """Two stored ok results (made without training) and three files that are not results."""
    spec = GridSpec.from_dict({"grid": {"methods": ["fgsm"], "eps": [8], "seeds": [0, 1]}})
    for cell in resolve(spec, pm.registry):
        write_json(
            result_path(tmp_path, cell),
            {**result_header(cell, "2026-01-01T00:00:00+00:00"), "status": "ok", "metrics": {"clean_acc": 0.5}},
        )
    (tmp_path / "foreign.json").write_text(json.dumps({"config": {"lr": 0.1}, "status": "done"}))
    (tmp_path / "latin1.json").write_bytes('{"note": "caf\xe9"}'.encode("latin-1"))
    (tmp_path / "truncated.json").write_text('{"config": {"dataset": ')
    return tmp_path


def test_unreadable_files_are_named_and_skipped(results_dir):
    out = cli_run(["results", str(results_dir), "--format", "csv"])
    assert out.exit_code == 0, out.output
    for name, why in [
        ("foreign.json", "not a cobench result"),
        ("latin1.json", "not UTF-8"),
        ("truncated.json", "not valid JSON"),
    ]:
        line = next(line for line in out.output.splitlines() if name in line)
        assert "skipped" in line and why in line
    assert sum(1 for line in out.output.splitlines() if ",ok,digits," in line) == 2


def test_a_closed_pipe_ends_quietly(results_dir):
    proc = subprocess.Popen(
        [sys.executable, "-m", "cobench", "results", str(results_dir), "--format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # the reader (head) is gone before cobench writes
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) != 0
    assert "BrokenPipe" not in err and "Error" not in err, err


def test_render_without_leaderboard_table_is_an_error(tmp_path):
    board = tmp_path / "board.toml"
    board.write_text('[grid]\nmethods = ["fgsm"]\n')
    with pytest.raises(ConfigError, match=r"no \[leaderboard\] table"):
        load_leaderboard(board)
    out = subprocess.run(
        [sys.executable, "-m", "cobench", "leaderboard", "render", str(board)], capture_output=True, text=True
    )
    assert out.returncode != 0 and "no [leaderboard] table" in out.stderr
