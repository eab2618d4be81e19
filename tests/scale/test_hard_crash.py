"""A component that ends the process (os._exit) under the default local executor: nothing can
be caught in-process, but the cell's claim survives it, so the next run says the cell was
interrupted and resumes it; a cell interrupted twice in a row is recorded as failed instead."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import torch
import torch.nn.functional as F

from cobench.api import Method
from cobench.grid.resolve import resolve
from cobench.options import NoProgress
from cobench.run.claims import claim_path, read_claim, this_host
from cobench.run.runner import Runner
from cobench.store.results import iter_results, result_path
from cobench.testing import tiny_grid_spec


class Notes(NoProgress):
    def __init__(self) -> None:
        self.notes: list[str] = []

    def notice(self, message: str) -> None:
        self.notes.append(message)


class ExitsInTrainStep(Method):
    """A plugin method that ends its process, as a segfault or an OOM kill would."""

    name = "os-exit"

    def train_step(self, batch, ctx):
        os._exit(7)


class TrainsPlainly(Method):
    """Stands in for ``os-exit`` once its author fixed it (same name, so the same cell)."""

    name = "os-exit"

    def train_step(self, batch, ctx):
        logits = ctx.model(batch.x)
        ctx.update(F.cross_entropy(logits, batch.y), logits, batch.y)


def exit_code(pid: int, timeout_s: float) -> int:
    """The exit code of child ``pid``; kills it and fails when it runs longer than ``timeout_s``."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError(f"the forked run did not end within {timeout_s} s")


def register(pm, cls) -> None:
    pm.registry.components["methods"][cls.name] = cls
    pm.registry.owners["methods"][cls.name] = "test"


def test_os_exit_in_train_step_leaves_a_claim_the_next_run_reports_and_resumes(tmp_path, pm):
    register(pm, ExitsInTrainStep)
    spec = tiny_grid_spec(["os-exit"])
    pid = os.fork()  # the `cobench run` that the plugin ends (a fork: no second torch import)
    if pid == 0:
        try:
            torch.set_num_threads(1)  # no OpenMP thread pool in a forked child
            Runner(spec, tmp_path, options={"device": "cpu"}).run()
        finally:
            os._exit(1)  # only if the plugin did not end the process
    assert exit_code(pid, timeout_s=120) == 7
    (claim,) = [read_claim(p) for p in tmp_path.rglob("*.claim")]
    assert (claim.host, claim.pid) == (this_host(), pid) and not list(iter_results(tmp_path))
    register(pm, TrainsPlainly)
    notes = Notes()
    summary = Runner(spec, tmp_path, options={"device": "cpu"}).run(notes)
    (cell,) = resolve(spec, pm.registry)
    assert notes.notes == [
        f"{cell.label}: was interrupted (process {pid} on {this_host()} ended during training); taking it over"
    ]
    assert summary.ran == 1 and not summary.failed and not list(tmp_path.rglob("*.claim"))


def test_a_cell_interrupted_twice_in_a_row_is_recorded_as_failed_and_the_grid_goes_on(tmp_path, pm):
    register(pm, TrainsPlainly)
    spec = tiny_grid_spec(["os-exit", "fgsm"])
    crashing = next(c for c in resolve(spec, pm.registry) if c.method.name == "os-exit")
    path = claim_path(result_path(tmp_path, crashing))
    path.parent.mkdir(parents=True)
    done = subprocess.Popen(["true"])
    done.wait()
    path.write_text(json.dumps({"host": this_host(), "pid": done.pid, "started_at": "x", "interruptions": 1}))
    summary = Runner(spec, tmp_path, options={"device": "cpu"}).run()
    assert summary.ran == 2 and [r["cell_id"] for r in summary.failed] == [crashing.cell_id]
    message = summary.failed[0]["error"]["message"]
    assert message.startswith(f"training ended with its process 2 times in a row (last: process {done.pid} on ")
    assert "--executor local-parallel runs each cell in a worker process" in message
    assert sorted(r["status"] for _, r in iter_results(tmp_path)) == ["failed", "ok"]
    assert not path.exists()
