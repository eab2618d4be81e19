"""The third-party plugin path end to end, without pip: the example plugin is "installed" as a
``*.dist-info`` whose entry points are read from its own pyproject.toml, exactly what pip
would write, and cobench must find it, attribute it, ship it to worker processes and run it.
(CI also pip-installs it for real and runs its own test suite.)"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cobench.grid.spec import tomllib  # tomllib, or tomli on Python 3.10
from cobench.plugins import reset_plugin_manager
from cobench.store.results import iter_results
from cobench.testing import MethodContract
from tests.conftest import cli_run

PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "cobench-example-method"


def fake_install(site: Path) -> None:
    project = tomllib.loads((PLUGIN / "pyproject.toml").read_text())["project"]
    info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    lines = ["[cobench]"] + [f"{k} = {v}" for k, v in project["entry-points"]["cobench"].items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture(autouse=True)
def example_installed(tmp_path, monkeypatch):
    site = tmp_path / "site"
    fake_install(site)
    for path in (str(PLUGIN / "src"), str(site)):
        monkeypatch.syspath_prepend(path)
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(PLUGIN / "src"), str(site), os.environ.get("PYTHONPATH", "")])
    )
    reset_plugin_manager()
    yield
    reset_plugin_manager()


class TestExamplePluginKeepsTheContract(MethodContract):
    method_name = "r-fgsm"
    max_perturbation = 1.0


def test_list_methods_shows_it_with_its_plugin():
    out = cli_run(["list", "methods", "--json"])
    assert out.exit_code == 0, out.output
    (row,) = [r for r in json.loads(out.output) if r["name"] == "r-fgsm"]
    assert row["plugin"] == "example_method" and row["parameters"] == {"alpha": 0.5}
    assert "Ensemble adversarial training" in row["paper"]
    table = cli_run(["list", "methods"], terminal_width=200).output
    assert "r-fgsm" in table and "example_method" in table


def test_plugins_command_shows_the_distribution():
    out = cli_run(["plugins", "--json"])
    info = {p["name"]: p for p in json.loads(out.output)["plugins"]}["example_method"]
    assert info["distribution"] == "cobench-example-method" and info["version"] == "0.1.0"
    assert info["hooks"] == ["register_methods"] and not info["builtin"]


def test_a_grid_with_it_runs_in_worker_processes(tmp_path):
    res = tmp_path / "res"
    out = cli_run(
        [
            "run",
            "--methods",
            "r-fgsm,fgsm",
            "--eps",
            "8",
            "--epochs",
            "1",
            "--evaluators",
            "clean",
            "--param",
            "models.small-cnn.width=4",
            "--param",
            "datasets.digits.size=8",
            "--param",
            "methods.r-fgsm.alpha=0.25",
            "--device",
            "cpu",
            "--executor",
            "local-parallel",
            "--workers",
            "2",
            "--results-dir",
            str(res),
        ]
    )
    assert out.exit_code == 0, out.output
    results = {r["config"]["method"]["name"]: r for _, r in iter_results(res)}
    assert set(results) == {"r-fgsm", "fgsm"} and all(r["status"] == "ok" for r in results.values())
    assert results["r-fgsm"]["plugins"]["methods"] == "example_method"
    assert results["r-fgsm"]["config"]["method"]["params"] == {"alpha": 0.25}
