"""Mid-cell checkpoints in the training loop: an interrupted cell resumes after its last
finished epoch and ends with exactly the metrics of an uninterrupted run (on CPU)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from cobench.grid.resolve import resolve
from cobench.plugins import get_plugin_manager
from cobench.run.cell_worker import execute_cell
from cobench.run.checkpoints import checkpoint_path
from cobench.testing import tiny_grid_spec
from tests.scale.test_kill_resume import env, results

#: methods with state carried across steps (persistent delta, per-sample priors, adaptive
#: lambda) and one drawing its noise from the cell's generator
METHODS = ["n-fgsm", "free", "fgsm-pgi", "elle-a"]
TIMING = ("epoch_train_time_s",)


class Interrupt(Exception):
    pass


def tiny_cell(method: str):
    spec = tiny_grid_spec([method], evaluators=["clean", "co"])
    spec.override(epochs=2)
    if method == "free":
        spec.set_param("methods.free.replays=1")  # 2 epochs of 2, not ceil(2 / 8) = 1
    (cell,) = resolve(spec, get_plugin_manager().registry)
    return cell


def comparable(result: dict) -> tuple:
    curves = {k: v for k, v in result["curves"].items() if k not in TIMING}
    return result["metrics"], curves, result["cost"]["optimizer_updates"], result["cost"]["forward_passes_per_step"]


@pytest.mark.parametrize("method", METHODS)
def test_a_cell_interrupted_after_an_epoch_resumes_to_identical_metrics(tmp_path, method):
    cell = tiny_cell(method)
    straight = execute_cell(cell.config(), {"device": "cpu"})
    assert straight["status"] == "ok"
    options = {"device": "cpu", "checkpoint_dir": str(tmp_path)}

    def stop_in_epoch_two(epoch, epochs, record):
        if epoch == 2:
            raise Interrupt  # after epoch 2's training, before its checkpoint: epoch 1's is the last one

    broken = execute_cell(cell.config(), options, stop_in_epoch_two)
    assert broken["status"] == "failed" and checkpoint_path(tmp_path, cell.cell_id).exists()
    epochs_seen = []
    resumed = execute_cell(cell.config(), options, lambda e, n, r: epochs_seen.append(e))
    assert resumed["status"] == "ok" and epochs_seen == [2]  # epoch 1 came from the checkpoint
    assert comparable(resumed) == comparable(straight)
    assert not checkpoint_path(tmp_path, cell.cell_id).exists()  # removed once the cell finished


def test_checkpoints_are_kept_on_request(tmp_path):
    cell = tiny_cell("fgsm")
    result = execute_cell(cell.config(), {"device": "cpu", "checkpoint_dir": str(tmp_path), "keep_checkpoints": True})
    assert result["status"] == "ok" and checkpoint_path(tmp_path, cell.cell_id).exists()


def test_a_cell_sigkilled_mid_training_resumes_from_its_checkpoint(tmp_path):
    """The real thing: ``cobench run`` killed with SIGKILL between epochs, then run again."""
    grid = [
        "--methods",
        "n-fgsm",
        "--eps",
        "8",
        "--epochs",
        "6",
        "--evaluators",
        "clean,co",
        "--param",
        "models.small-cnn.width=4",
        "--param",
        "datasets.digits.size=8",
        "--device",
        "cpu",
    ]
    straight = subprocess.run(
        [sys.executable, "-m", "cobench", "run", *grid, "--results-dir", str(tmp_path / "a")],
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert straight.returncode == 0, straight.stderr
    res = tmp_path / "b"
    cmd = [sys.executable, "-m", "cobench", "run", *grid, "--results-dir", str(res)]
    proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoints = res / "checkpoints"
    deadline = time.time() + 120
    while not (checkpoints.exists() and list(checkpoints.glob("*.pt"))):
        assert proc.poll() is None and time.time() < deadline, "no checkpoint was written"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not results(res), "the kill should land mid-cell"
    (ckpt,) = checkpoints.glob("*.pt")
    killed_at = torch.load(ckpt, weights_only=True)["epoch"]
    assert 1 <= killed_at < 6
    again = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    (a,), (b,) = results(tmp_path / "a").values(), results(res).values()
    assert comparable(a) == comparable(b)
    assert not list(checkpoints.glob("*.pt"))


def test_a_resumed_cell_records_the_time_its_interrupted_run_had_trained(tmp_path):
    """``wall_time_s`` is the last run's; ``cost.wall_before_resume_s`` adds what the interrupted
    run spent up to the checkpoint it resumed from, so a board's build time counts both."""
    cell = tiny_cell("fgsm")
    straight = execute_cell(cell.config(), {"device": "cpu"})
    assert straight["cost"]["wall_before_resume_s"] == 0.0
    options = {"device": "cpu", "checkpoint_dir": str(tmp_path)}

    def stop_in_epoch_two(epoch, epochs, record):
        if epoch == 2:
            raise Interrupt

    broken = execute_cell(cell.config(), options, stop_in_epoch_two)
    resumed = execute_cell(cell.config(), options)
    before = resumed["cost"]["wall_before_resume_s"]
    assert 0.0 < before <= broken["wall_time_s"]
    assert before >= resumed["curves"]["epoch_train_time_s"][0]  # epoch 1 was trained by the broken run
