"""The submitit executor, run through submitit's local executor (no SLURM needed)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from cobench.errors import CobenchError, ConfigError
from cobench.executors.submitit_executor import CellBatch, SubmititExecutor, batches
from cobench.options import NoProgress, RunOptions
from cobench.run.runner import Runner
from cobench.testing import tiny_grid_spec
from tests.scale.test_executors import cells, curves, sleepy_work

pytestmark = pytest.mark.extras
submitit = pytest.importorskip("submitit", reason="needs the slurm extra: pip install -e '.[slurm]'")


def logged_work(config: dict, log: str, on_epoch=None) -> dict:
    """Appends 'start SEED PID' / 'end SEED' to ``log``; sleeps ``seed`` seconds in between."""
    log = Path(log)
    with log.open("a") as f:
        f.write(f"start {config['seed']} {os.getpid()}\n")
    time.sleep(config["seed"])
    with log.open("a") as f:
        f.write(f"end {config['seed']}\n")
    return {"status": "ok", "seed": config["seed"]}


def test_cells_are_cut_into_batches_in_grid_order():
    assert batches(list(range(5)), 2) == [[0, 1], [2, 3], [4]]
    assert batches([0], 4) == [[0]]


def test_bad_options_are_clear_errors(monkeypatch):
    with pytest.raises(ConfigError, match="cluster must be one of slurm, local, debug"):
        SubmititExecutor(cluster="pbs")
    with pytest.raises(ConfigError, match="cells_per_job must be a positive integer"):
        SubmititExecutor(cells_per_job=0)
    monkeypatch.setitem(sys.modules, "submitit", None)
    with pytest.raises(CobenchError, match=r"pip install 'cobench\[slurm\]'"):
        list(SubmititExecutor().run(cells([0]), sleepy_work, RunOptions(), NoProgress()))


def test_a_job_array_runs_every_batch_and_yields_every_cell(tmp_path):
    ex = SubmititExecutor(folder=str(tmp_path / "logs"), cluster="local", cells_per_job=2, poll_s=0.2)
    got = {
        cell.seed: result
        for cell, result in ex.run(cells([0, 1, 2]), sleepy_work, RunOptions(device="cpu"), NoProgress())
    }
    assert sorted(got) == [0, 1, 2] and all(r["status"] == "ok" for r in got.values())
    assert got[0]["pid"] == got[1]["pid"] != got[2]["pid"]  # two array tasks: cells 0+1, then cell 2


def test_a_failed_job_becomes_failed_results_for_its_cells(tmp_path):
    from tests.scale.test_executors import dying_work

    ex = SubmititExecutor(folder=str(tmp_path / "logs"), cluster="local", cells_per_job=2, poll_s=0.2)
    results = [r for _, r in ex.run(cells([0, 1]), dying_work, RunOptions(device="cpu"), NoProgress())]
    assert [r["status"] for r in results] == ["failed", "failed"]
    assert "submitit job" in results[0]["error"]["message"]


def test_a_preempted_job_requeues_and_skips_the_cells_it_finished(tmp_path):
    log = tmp_path / "log.txt"
    ex = submitit.AutoExecutor(folder=tmp_path / "logs", cluster="local", local_max_num_timeout=2)
    ex.update_parameters(timeout_min=60)
    job = ex.submit(CellBatch(logged_work, [{"seed": 0}, {"seed": 3}], str(log)))
    deadline = time.time() + 120
    while "start 3" not in (log.read_text() if log.exists() else ""):
        assert time.time() < deadline, "the second cell never started"
        time.sleep(0.1)
    task_pid = int(log.read_text().split("start 3 ")[1].split()[0])
    os.kill(task_pid, signal.SIGUSR2)  # SLURM's preemption signal: submitit checkpoints the batch and requeues it
    assert [r["seed"] for r in job.result()] == [0, 3]
    events = [" ".join(line.split()[:2]) for line in log.read_text().splitlines()]
    assert events == ["start 0", "end 0", "start 3", "start 3", "end 3"]  # cell 0 is not run again


def test_a_grid_through_submitit_matches_the_sequential_executor(tmp_path, local_reference):
    summary = Runner(
        tiny_grid_spec(["fgsm", "n-fgsm"]),
        tmp_path / "res",
        options={"device": "cpu"},
        executor="submitit",
        executor_options={"cluster": "local", "folder": str(tmp_path / "logs"), "poll_s": 0.2, "cells_per_job": 2},
    ).run()
    assert summary.ran == 2 and not summary.failed, [r.get("error") for r in summary.failed]
    got = curves(tmp_path / "res")
    for name in got:
        assert got[name] == pytest.approx(local_reference[name], rel=1e-4, abs=1e-5), name
