"""local-parallel: a worker process that dies fails its own cell only; the cells that were
in flight beside it run again in a fresh pool."""

from __future__ import annotations

import os
import signal
import time

from cobench.api import Method
from cobench.executors.local_parallel import LocalParallelExecutor
from cobench.grid.resolve import resolve
from cobench.options import NoProgress, RunOptions
from cobench.plugins import get_plugin_manager
from cobench.run.cell_worker import execute_cell
from cobench.testing import tiny_grid_spec

from .test_executors import cells


class ExitsInTrainStep(Method):
    """A plugin method that ends its process, as a segfault or an OOM kill would."""

    name = "os-exit"

    def train_step(self, batch, ctx):
        os._exit(7)


def register_exiting_method() -> None:
    registry = get_plugin_manager().registry
    registry.components["methods"]["os-exit"] = ExitsInTrainStep
    registry.owners["methods"]["os-exit"] = "test"


def work_with_exiting_plugin(config: dict, options: RunOptions, on_epoch=None) -> dict:
    """The runner's work function, in a worker whose plugins include ``os-exit``."""
    register_exiting_method()
    return execute_cell(config, options, on_epoch)


def test_a_plugin_that_exits_its_worker_fails_only_its_own_cell():
    register_exiting_method()
    grid = resolve(tiny_grid_spec(["os-exit", "fgsm"]), get_plugin_manager().registry)  # trained side by side
    out = list(
        LocalParallelExecutor(workers=2).run(grid, work_with_exiting_plugin, RunOptions(device="cpu"), NoProgress())
    )
    assert sorted(c.cell_id for c, _ in out) == sorted(c.cell_id for c in grid)  # each cell reported once
    by_method = {}
    for cell, result in out:
        by_method.setdefault(cell.method.name, []).append(result)
    (crashed,) = by_method["os-exit"]
    assert crashed["status"] == "failed"
    assert crashed["error"]["message"] == "worker process died (exit code 7) while training this cell"
    assert [r["status"] for r in by_method["fgsm"]] == ["ok"]


def dies_unrecognisably(config: dict, options: RunOptions, on_epoch=None) -> dict:
    """Seed 7 ends its process with SIGTERM, like the pool's own clean-up: its culprit cannot be told."""
    if config["seed"] == 7:
        time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(config["seed"] / 10)
    return {"status": "ok", "seed": config["seed"]}


def test_when_the_dead_worker_cannot_be_told_each_suspect_is_retried_once_alone():
    out = {
        c.seed: r
        for c, r in LocalParallelExecutor(workers=2).run(
            cells([7, 9]), dies_unrecognisably, RunOptions(device="cpu"), NoProgress()
        )
    }
    assert out[9] == {"status": "ok", "seed": 9}
    assert out[7]["status"] == "failed" and out[7]["error"]["message"] == (
        "worker process died (killed by signal SIGTERM) while training this cell"
    )
