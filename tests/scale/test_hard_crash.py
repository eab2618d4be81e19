"""A component that ends the process (os._exit) under the default local executor: nothing can
be caught in-process, but the cell's claim survives it, so the next run says the cell was
interrupted and resumes it; a cell interrupted twice in a row is recorded as failed instead."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch.nn.functional as F

from cobench.api import Method
from cobench.claims import claim_path, read_claim, this_host
from cobench.options import NoProgress
from cobench.resolve import resolve
from cobench.results import iter_results, result_path
from cobench.runner import Runner
from cobench.testing import tiny_grid_spec

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--eps", "8", "--epochs", "1", "--evaluators", "clean", "--param", "models.small-cnn.width=4",
        "--param", "datasets.digits.size=8", "--device", "cpu"]


class Notes(NoProgress):
    def __init__(self) -> None:
        self.notes: list[str] = []

    def notice(self, message: str) -> None:
        self.notes.append(message)


class TrainsPlainly(Method):
    """Stands in for ``os-exit`` once its author fixed it (same name, so the same cell)."""

    name = "os-exit"

    def train_step(self, batch, ctx):
        logits = ctx.model(batch.x)
        ctx.update(F.cross_entropy(logits, batch.y), logits, batch.y)


def install_exiting_plugin(site: Path) -> dict[str, str]:
    """The environment of a subprocess that has tests/scale/exiting_plugin.py installed as a plugin."""
    info = site / "exiting_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: exiting-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[cobench]\nexiting = tests.scale.exiting_plugin\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(site), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1"}


def cli_spec(methods: list[str]):
    """The grid that `cobench run --methods ... ARGS` runs."""
    from cobench.grid import GridSpec

    spec = GridSpec(methods=methods, eps=[8], evaluators=["clean"])
    spec.override(epochs=1)
    spec.set_param("models.small-cnn.width=4")
    spec.set_param("datasets.digits.size=8")
    return spec


def register(pm, cls) -> None:
    pm.registry.components["methods"][cls.name] = cls
    pm.registry.owners["methods"][cls.name] = "test"


def test_os_exit_in_train_step_leaves_a_claim_the_next_run_reports_and_resumes(tmp_path, pm):
    res = tmp_path / "res"
    proc = subprocess.run([sys.executable, "-m", "cobench", "run", "--methods", "os-exit", *ARGS,
                           "--results-dir", str(res)], env=install_exiting_plugin(tmp_path / "site"),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 7, proc.stderr
    (claim,) = [read_claim(p) for p in res.rglob("*.claim")]
    assert claim.host == this_host() and claim.pid != os.getpid() and not list(iter_results(res))
    register(pm, TrainsPlainly)
    notes = Notes()
    summary = Runner(cli_spec(["os-exit"]), res, options={"device": "cpu"}).run(notes)
    (cell,) = resolve(cli_spec(["os-exit"]), pm.registry)
    assert notes.notes == [f"{cell.label}: was interrupted (process {claim.pid} on {claim.host} ended during "
                           "training); taking it over"]
    assert summary.ran == 1 and not summary.failed and not list(res.rglob("*.claim"))


def test_a_cell_interrupted_twice_in_a_row_is_recorded_as_failed_and_the_grid_goes_on(tmp_path, pm):
    register(pm, TrainsPlainly)
    spec = tiny_grid_spec(["os-exit", "fgsm"])
    crashing = next(c for c in resolve(spec, pm.registry) if c.method["name"] == "os-exit")
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
