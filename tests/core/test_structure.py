"""Each idea in one place: the kinds table, the docs that describe it, resolution, run
options, the evaluation helper and the shared run report."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from rich.console import Console
from torch import nn

from cobench import hookspecs
from cobench.api import Component, Evaluator, Method
from cobench.cli.run_flags import report_run
from cobench.errors import CobenchError, ConfigError
from cobench.grid.resolve import resolve, resolved_params
from cobench.grid.spec import GridSpec
from cobench.kinds import GRID_KINDS, KINDS, kind, singular
from cobench.options import RunOptions
from cobench.run.evaluation import run_evaluators
from cobench.run.runner import RunSummary

ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- kinds
def test_every_register_hook_but_commands_is_one_kind_and_back():
    specs = {name for name in dir(hookspecs) if name.startswith("register_")}
    assert specs - {k.hook for k in KINDS} == {"register_commands"}
    for k in KINDS:
        assert getattr(hookspecs, k.hook) is k.hookspec
        assert issubclass(k.base, Component) and k.singular == k.base.kind and k.plural.startswith(k.singular)


def test_grid_kinds_are_the_fields_of_a_grid_spec_and_the_error_names_the_singular(pm):
    assert set(GRID_KINDS) <= set(GridSpec.__dataclass_fields__) and "executors" not in GRID_KINDS
    assert singular("injections") == "injection" and kind("methods").base is Method
    with pytest.raises(CobenchError, match="unknown injection 'x'; valid injections: "):
        pm.registry.get("injections", "x")


def test_contributing_documents_every_hook_and_base_class():
    """Like datasette's test_docs: the hook table cannot silently fall behind the kinds table."""
    text = (ROOT / "CONTRIBUTING.md").read_text()
    for k in KINDS:
        assert re.search(rf"\| `{k.hook}` \| `cobench.api.{k.base.__name__}` \|", text), k.hook


def base_class_attributes() -> list[tuple[str, str]]:
    """(class, attribute) for every public attribute and method each base class declares itself."""
    bases = (Component,) + tuple(k.base for k in KINDS)
    return [(base.__name__, attr) for base in bases for attr in vars(base) if not attr.startswith("_")]


@pytest.mark.parametrize("owner,attr", base_class_attributes())
def test_contributing_documents_every_base_class_attribute(owner, attr):
    """A plugin author reads CONTRIBUTING.md, not api.py: an attribute added to a base class
    without a word there fails here (datasette's test_docs does this for its plugin hooks)."""
    text = (ROOT / "CONTRIBUTING.md").read_text()
    assert re.search(rf"`{attr}[`(]", text), f"{owner}.{attr} is not documented in CONTRIBUTING.md"


def test_contributing_documents_every_hookspec():
    from cobench import hookspecs

    specs = [n for n, f in vars(hookspecs).items() if hasattr(f, "cobench_spec")]
    assert len(specs) == len(KINDS) + 1  # one per kind, and register_commands
    text = (ROOT / "CONTRIBUTING.md").read_text()
    for name in specs:
        assert f"| `{name}` |" in text, name


# --------------------------------------------------------------------------- resolution
class Scaled(Method):
    name = "scaled"

    def __init__(self, alpha: float = 1.0, beta: float = 2.0, gamma: float = 3.0):
        pass

    @classmethod
    def defaults_for_eps(cls, eps255: float) -> dict:
        return {"alpha": eps255, "beta": eps255}


def test_resolved_params_later_sources_win():
    assert resolved_params(Scaled) == {"alpha": 1.0, "beta": 2.0, "gamma": 3.0}
    assert resolved_params(Scaled, eps255=8) == {"alpha": 8, "beta": 8, "gamma": 3.0}
    assert resolved_params(Scaled, {"beta": 0.5}, eps255=8) == {"alpha": 8, "beta": 0.5, "gamma": 3.0}


def test_resolve_leaves_the_spec_as_the_user_wrote_it(pm):
    spec = GridSpec(methods=["fgsm"], eps=[8], injections=["none", "low-freq"], betas=[4, 8])
    before = repr(spec)
    cells = resolve(spec, pm.registry)
    assert repr(spec) == before
    assert [(c.injection.name, c.beta, c.injected) for c in cells] == [
        ("none", 0.0, False),
        ("low-freq", 4.0, True),
        ("low-freq", 8.0, True),
    ]


# --------------------------------------------------------------------------- run options
def test_run_options_are_frozen_and_a_mapping_is_checked():
    options = RunOptions.of({"device": "cpu", "channels_last": True})
    assert options == RunOptions(device="cpu", channels_last=True) and RunOptions.of(options) is options
    with pytest.raises(AttributeError):
        options.device = "cuda"  # type: ignore[misc]
    with pytest.raises(TypeError, match="unknown run option.*on_epoch; valid: device"):
        RunOptions.of({"device": "cpu", "on_epoch": print})


# --------------------------------------------------------------------------- evaluation
class Reports(Evaluator):
    name = "reports"

    def __init__(self, metrics: dict | None = None):
        self.metrics = metrics or {}

    def evaluate(self, model, ctx):
        return dict(self.metrics)


def test_run_evaluators_merges_in_eval_mode_and_restores_train_mode():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)).train()
    modes = []

    def measure(ev):
        modes.append(model.training)
        return ev.evaluate(model, None)

    got = run_evaluators(model, [Reports({"a": 1}), Reports({"b": 2})], measure, {"epoch": 1})
    assert got == {"epoch": 1, "a": 1, "b": 2} and modes == [False, False] and model.training


@pytest.mark.parametrize(
    "reported, evaluators, owner",
    [
        ({}, [Reports({"a": 1}), Reports({"a": 2})], "'reports'"),
        ({"train_loss": 0.1}, [Reports({"train_loss": 9})], "'the training loop'"),
    ],
)
def test_a_metric_reported_twice_is_an_error_naming_both(reported, evaluators, owner):
    model = nn.Linear(2, 2)
    with pytest.raises(
        CobenchError, match=rf"evaluator 'reports' reports metric\(s\) \[.*\] already reported by {owner}"
    ):
        run_evaluators(model, evaluators, lambda ev: ev.evaluate(model, None), reported)


# --------------------------------------------------------------------------- the shared report
def summary(**kw) -> RunSummary:
    return RunSummary(**{"ran": 2, "skipped": 1, **kw})


@pytest.mark.parametrize(
    "run, status, fragment",
    [
        (summary(), 0, "2 cells run, 1 already finished, 0 failed; results in out/"),
        (summary(failed=[{"cell_id": "abc", "error": {"message": "boom"}}]), 1, "failed abc: boom"),
        (summary(interrupted=True), 130, "interrupted: finished cells are saved"),
    ],
)
def test_report_run_prints_and_returns_the_exit_status(run, status, fragment):
    console = Console(record=True, width=200)
    assert report_run(run, "out", console) == status
    assert fragment in console.export_text()


def test_both_run_commands_take_the_same_run_options():
    from cobench.cli import run
    from cobench.leaderboard.commands import build

    def flags(command):
        return {opt for p in command.params for opt in p.opts}

    shared = {"--data-dir", "--download", "--device", "--channels-last", "--executor", "--workers", "--ray-address"}
    assert shared <= flags(run) and shared <= flags(build)


def test_a_bad_device_is_one_clear_error_before_training(tmp_path):
    from tests.conftest import cli_run

    out = cli_run(["run", "--device", "tpu", "--results-dir", str(tmp_path), "--epochs", "1"])
    assert out.exit_code != 0 and "unknown device 'tpu'" in out.output
    assert not list(tmp_path.rglob("eps*.json"))


def test_config_error_for_a_bad_spec_arg(pm):
    with pytest.raises(ConfigError, match="method 'fgsm' takes no ':ARG'"):
        resolve(GridSpec(methods=["fgsm:x"]), pm.registry)


def test_every_import_of_a_cobench_name_resolves_even_inside_functions():
    """Lazy imports inside commands are not exercised by every test; a renamed name must not hide there."""
    import ast
    import importlib

    missing = []
    for path in sorted((ROOT / "cobench").rglob("*.py")):
        package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] != "cobench":
                continue
            imported = importlib.import_module(module)
            for alias in node.names:
                if not hasattr(imported, alias.name):
                    try:
                        importlib.import_module(f"{module}.{alias.name}")
                    except ImportError:
                        missing.append(f"{path.relative_to(ROOT)}: from {module} import {alias.name}")
    assert missing == []
