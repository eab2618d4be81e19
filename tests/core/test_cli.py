"""The command line end to end on the embedded dataset, and its errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import cli_run

TINY = ["--epochs", "1", "--param", "models.small-cnn.width=4", "--evaluators", "clean,fgsm,co"]


def cobench(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "cobench", *args], capture_output=True, text=True, cwd=cwd, env=env)


def test_run_prints_a_table_writes_summaries_and_resumes(tmp_path):
    res = tmp_path / "res"
    out = cli_run(["run", "--methods", "fgsm,n-fgsm", "--eps", "8", "--results-dir", str(res), *TINY])
    assert out.exit_code == 0, out.output
    assert "fgsm" in out.output and "n-fgsm" in out.output and "8/255" in out.output
    assert "2 cells run" in out.output
    import pandas as pd

    df = pd.read_csv(res / "summary.csv")
    assert set(df["method"]) == {"fgsm", "n-fgsm"} and df["clean_acc"].between(0, 1).all()
    again = cli_run(["run", "--methods", "fgsm,n-fgsm", "--eps", "8", "--results-dir", str(res), *TINY])
    assert "resuming: 2 of 2 cells already finished" in again.output and "0 cells run" in again.output
    exported = cli_run(["results", str(res), "--format", "json"])
    assert {r["method"] for r in json.loads(exported.output)} == {"fgsm", "n-fgsm"}


def test_grid_file_with_flag_override(tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text(
        '[grid]\nmethods = ["fgsm"]\neps = [4]\nevaluators = ["clean"]\n[training]\nepochs = 1\n'
        "[params.models.small-cnn]\nwidth = 4\n"
    )
    out = cli_run(["run", str(grid), "--seeds", "0,1", "--results-dir", str(tmp_path / "r"), "--dry-run"])
    assert out.exit_code == 0, out.output
    assert "2 cells, 0 finished" in out.output and "seed=1" in out.output


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--methods", "fgsn"], "unknown method 'fgsn'; valid methods: "),
        (["--injections", "lowfreq"], "unknown injection 'lowfreq'; valid injections:"),
        (["--eps", "-2"], "eps '-2' is out of range"),
        (["--eps", "300"], "out of range"),
        (["--beta", "x"], "beta 'x' is not a number"),
        (["--param", "methods.pgd.stepz=3"], "no parameter 'stepz'"),
        (["--device", "cuda:0"], "CUDA is not available"),
    ],
)
def test_bad_input_exits_non_zero_with_a_clear_message_and_no_traceback(tmp_path, args, fragment):
    proc = cobench("run", "--results-dir", str(tmp_path / "r"), *args)
    if "CUDA" in fragment and "cuda" in proc.stdout + proc.stderr and proc.returncode == 0:
        pytest.skip("a GPU is available here")
    assert proc.returncode == 2, proc.stderr
    assert fragment in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unreadable_data_dir(tmp_path):
    proc = cobench(
        "run",
        "--datasets",
        "cifar10",
        "--data-dir",
        str(tmp_path / "missing"),
        "--results-dir",
        str(tmp_path / "r"),
        *TINY,
    )
    assert proc.returncode == 2 and "cannot read cifar10 from data dir" in proc.stderr
    assert "Traceback" not in proc.stderr


FAILING_METHOD = """
from cobench import hookimpl
from cobench.api import Method

class Failing(Method):
    name = "failing"

    def train_step(self, batch, ctx):
        raise RuntimeError("deliberate failure in a plugin method")

@hookimpl
def register_methods(register):
    register(Failing)
"""


def plugin_env(tmp_path, modules, dist="cobench-test-plugin"):
    import os

    from tests.core.test_plugins import make_distribution

    site = make_distribution(tmp_path, dist, {m: m for m in modules}, modules)
    return {**os.environ, "PYTHONPATH": f"{site}:{os.getcwd()}"}


def test_failed_cells_exit_non_zero_and_keep_finished_results(tmp_path):
    env = plugin_env(tmp_path, {"cobench_failing": FAILING_METHOD})
    proc = cobench(
        "run", "--methods", "fgsm,failing", "--eps", "8", "--results-dir", str(tmp_path / "r"), *TINY, env=env
    )
    assert proc.returncode == 1, proc.stderr
    assert "deliberate failure in a plugin method" in proc.stderr and "Traceback" not in proc.stderr
    statuses = {p.parent.name: json.loads(p.read_text())["status"] for p in (tmp_path / "r").rglob("eps*.json")}
    assert statuses == {"fgsm": "ok", "failing": "failed"}


def test_plugins_and_list_commands():
    out = cli_run(["plugins", "--json"])
    data = json.loads(out.output)
    names = {p["name"] for p in data["plugins"]}
    assert "cobench.methods.fgsm" in names and data["failures"] == {}
    methods = json.loads(cli_run(["list", "methods", "--json"]).output)
    fgsm = next(m for m in methods if m["name"] == "fgsm")
    assert fgsm["plugin"] == "cobench.methods.fgsm" and fgsm["parameters"] == {"alpha": 1.0}
    table = cli_run(["list", "injections"]).output
    assert "low-freq" in table and "none" in table
    bad = cli_run(["list", "widgets"])
    assert bad.exit_code == 2 and "methods" in bad.output


def test_a_plugin_that_raises_is_disabled_with_a_clear_warning(tmp_path):
    env = plugin_env(
        tmp_path,
        {
            "cobench_raiser": "from cobench import hookimpl\n@hookimpl\n"
            "def register_methods(register):\n    raise RuntimeError('plugin bug')\n"
        },
    )
    proc = cobench("list", "methods", env=env)
    assert proc.returncode == 0 and "fgsm" in proc.stdout
    assert "plugin 'cobench_raiser' raised while registering methods" in proc.stderr and "plugin bug" in proc.stderr
    assert "Traceback" not in proc.stderr
