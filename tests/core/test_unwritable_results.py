"""A result that cannot be written mid-run (full disk, read-only directory) is kept elsewhere,
named in one line, and the run stops cleanly with a non-zero exit."""

from __future__ import annotations

import errno
import json
import os
import tempfile

import pytest

import cobench.run.claims
import cobench.run.runner
from cobench.errors import CobenchError
from cobench.options import NoProgress
from cobench.run.runner import Runner
from cobench.store.results import iter_results
from cobench.testing import tiny_grid_spec
from tests.conftest import cli_run


@pytest.fixture
def spare_dir(tmp_path, monkeypatch):
    """Where rescued results go (the system temp dir, here inside the test's folder)."""
    spare = tmp_path / "tmp"
    spare.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spare))
    return spare


@pytest.fixture
def full_disk(tmp_path, monkeypatch):
    """Writing anything under tmp_path/res fails with ENOSPC."""
    res = tmp_path / "res"
    real = cobench.run.runner.write_json

    def write_json(path, data):
        if res in path.parents:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, data)

    monkeypatch.setattr(cobench.run.runner, "write_json", write_json)
    return res


def rescued(spare):
    (path,) = list(spare.rglob("*.json"))
    return json.loads(path.read_text())


def test_a_full_disk_keeps_the_trained_result_says_where_in_one_line_and_stops(full_disk, spare_dir, pm):
    out = cli_run(
        [
            "run",
            "--methods",
            "fgsm",
            "--eps",
            "8",
            "--seeds",
            "0,1",
            "--epochs",
            "1",
            "--evaluators",
            "clean",
            "--param",
            "models.small-cnn.width=4",
            "--param",
            "datasets.digits.size=8",
            "--device",
            "cpu",
            "--results-dir",
            str(full_disk),
        ],
        terminal_width=400,
    )
    assert out.exit_code == 1, out.output
    assert "Traceback" not in out.output and "Error:" not in out.output
    (line,) = [text for text in out.output.splitlines() if text.startswith("stopped:")]
    assert "could not write the result of digits-small-cnn/fgsm/eps8-none-beta0-seed0-" in line
    assert "No space left on device (errno 28); the result is saved in " + str(spare_dir) in line
    result = rescued(spare_dir)  # the one cell that trained; the second never started
    assert result["status"] == "ok" and result["seed"] == 0 and 0 <= result["metrics"]["clean_acc"] <= 1
    assert not (full_disk / "summary.csv").exists() and not list(full_disk.rglob("*.claim"))


class ReadOnlyOnStart(NoProgress):
    """Makes the cell's result folder read-only once the cell starts (a mount gone read-only)."""

    def __init__(self, folder):
        self.folder = folder

    def on_cell_start(self, cell):
        self.folder.chmod(0o500)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_a_results_dir_that_turns_read_only_mid_run(tmp_path, spare_dir, pm):
    res = tmp_path / "res"
    folder = res / "digits-small-cnn" / "fgsm"
    folder.mkdir(parents=True)
    try:
        summary = Runner(tiny_grid_spec(["fgsm"]), res, options={"device": "cpu"}).run(ReadOnlyOnStart(folder))
    finally:
        folder.chmod(0o700)
    assert "Permission denied (errno 13)" in summary.unsaved and rescued(spare_dir)["status"] == "ok"


def test_a_claim_that_cannot_be_written_is_a_clear_error_and_keeps_finished_cells(tmp_path, monkeypatch, pm):
    real = cobench.run.claims.create_claim
    made = []

    def create_claim(path, interruptions=0):
        if made:  # the disk fills up after the first cell
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        made.append(path)
        return real(path, interruptions)

    monkeypatch.setattr(cobench.run.claims, "create_claim", create_claim)
    with pytest.raises(
        CobenchError,
        match=r"cannot claim eps8-.*: No space left on device \(errno 28\); the results "
        r"directory must be writable",
    ):
        Runner(tiny_grid_spec(["fgsm"], seeds=[0, 1]), tmp_path, options={"device": "cpu"}).run()
    assert [r["status"] for _, r in iter_results(tmp_path)] == ["ok"]
    assert not list(tmp_path.rglob("*.claim"))
