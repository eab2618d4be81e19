"""Grids that would run something other than what was written fail before training, naming
what is wrong (issue 21): an injection given no strength, empty or duplicated axes, a
``--param`` that would be ignored or is given twice, a ``[grid]`` that is not a table, and
boundary options that do not apply. Nothing here trains."""

from __future__ import annotations

import pytest

from tests.conftest import cli_run

#: (arguments, grid file text or None, exit status, words the message must contain)
CASES = [
    # an injection without a reference default beta, given no --beta: beta 0 would inject
    # nothing, so it is refused (the paper's DCT carriers take its configs' beta 8 instead)
    (["run", "--injections", "random"], None, 2, ["injection 'random'", "no strength", "--beta"]),
    (["run", "--injections", "none,random-sub"], None, 2, ["injection 'random-sub'", "--beta"]),
    (["run", "--dry-run"], 'injections = ["perp"]\n', 2, ["injection 'perp'", "betas = [8]"]),
    # a boundary search reads its betas from the grid: no default beta there
    (["boundary", "--injections", "low-freq"], None, 2, ["injection 'low-freq'", "--beta"]),
    # an unknown component is named before a --param about another one (issue 32)
    (
        ["run", "--models", "resnet18", "--param", "models.small-cnn.width=4"],
        None,
        2,
        ["unknown model 'resnet18'", "valid models:", "preact-resnet18", "small-cnn"],
    ),
    (
        ["run", "--methods", "fgsmm", "--param", "methods.fgsm.alpha=1"],
        None,
        2,
        ["unknown method 'fgsmm'", "valid methods:", "n-fgsm"],
    ),
    # empty axes in a grid file would run nothing
    (["run", "--dry-run"], "[grid]\neps = []\n", 2, ["g.toml", "eps = [] is empty"]),
    (["run", "--dry-run"], "seeds = []\n", 2, ["seeds = [] is empty"]),
    (["run", "--dry-run"], 'injections = ["low-freq"]\nbetas = []\n', 2, ["betas = [] is empty"]),
    # a value listed twice is not silently merged
    (["run", "--dry-run"], 'methods = ["fgsm", "fgsm"]\n', 2, ["g.toml", "methods lists 'fgsm' twice"]),
    (["run", "--dry-run"], 'eps = [8, "8/255"]\n', 2, ["eps lists 8/255 twice", "written 8 and '8/255'"]),
    (["run", "--dry-run", "--eps", "8,8/255"], None, 2, ["eps lists 8/255 twice"]),
    (["run", "--dry-run", "--seeds", "0,1,0"], None, 2, ["seeds lists 0 twice"]),
    # --param that would be ignored, or given twice with different values
    (
        ["run", "--dry-run", "--methods", "fgsm", "--param", "methods.pgd.steps=3"],
        None,
        2,
        ["method 'pgd' is not in the grid", "fgsm"],
    ),
    (
        ["run", "--dry-run", "--param", "methods.fgsm.alpha=1", "--param", "methods.fgsm.alpha=2"],
        None,
        2,
        ["methods.fgsm.alpha is given twice", "1 and 2"],
    ),
    # [grid] must be a table
    (["run", "--dry-run"], '[[grid]]\nmethods = ["fgsm"]\n', 2, ["[grid] must be a table"]),
    (["run", "--dry-run"], "grid = 3\n", 2, ["[grid] must be a table"]),
    # boundary options that cannot apply
    (["boundary", "--beta-step", "2"], None, 2, ["--beta-step", "--2d"]),
    (["boundary", "--eps-step", "nan"], None, 2, ["--eps-step", "finite"]),
    (["boundary", "--eps-step", "inf"], None, 2, ["--eps-step", "finite"]),
]


def cobench(args: list[str]):
    """The CLI with the plugin commands (``boundary``, ``leaderboard``) added, as ``main()`` does."""
    from cobench.cli import _load_plugin_commands

    _load_plugin_commands()
    return cli_run(args)


@pytest.mark.parametrize("args, grid, status, words", CASES, ids=[" ".join(c[0][1:]) or c[1] for c in CASES])
def test_bad_grid_is_refused_before_training(tmp_path, monkeypatch, args, grid, status, words):
    monkeypatch.chdir(tmp_path)  # the exact command writes nowhere but here (results/ by default)
    if grid is not None:
        (tmp_path / "g.toml").write_text(grid)
        args = [args[0], "g.toml", *args[1:]]
    out = cobench(args)
    assert out.exit_code == status, out.output
    line = out.output.strip().splitlines()[-1]
    assert all(w in line for w in words), line
    assert "Traceback" not in out.output
    assert not list(tmp_path.rglob("*.json")), "nothing may be trained or written"


def test_an_explicit_beta_still_runs_and_is_in_the_plan(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = cli_run(["run", "--methods", "fgsm,grad-align", "--injections", "low-freq", "--beta", "8", "--dry-run"])
    assert out.exit_code == 0, out.output
    assert out.output.count("low-freq(beta=8)") == 4  # 2 methods x the 2 default eps


def test_the_same_param_twice_with_one_value_is_accepted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = cli_run(
        ["run", "--dry-run", "--methods", "fgsm", "--param", "methods.fgsm.alpha=1", "--param", "methods.fgsm.alpha=1"]
    )
    assert out.exit_code == 0, out.output


#: the project's own example (the usage cobench was designed around), exactly as written
EXAMPLE = ["run", "--methods", "fgsm,grad-align", "--injections", "low-freq"]
NOTE = (
    "note: injection 'low-freq' given no --beta: taking beta 8/255, the default of co_features' configs "
    "(config/injected_feature_cifar_*_train/config.yaml: beta: 8)"
)


def test_the_projects_example_runs_at_co_features_default_beta_and_says_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    planned = cli_run([*EXAMPLE, "--dry-run"])
    assert planned.exit_code == 0, planned.output
    assert planned.output.count(NOTE) == 1, planned.output
    assert planned.output.count("low-freq(beta=8)") == 4  # 2 methods x the 2 default eps
    explicit = cli_run([*EXAMPLE, "--beta", "8", "--dry-run"])
    assert "note:" not in explicit.output  # an explicit beta is taken as given, without a word
    paths = lambda out: sorted(line.split()[-1] for line in out.splitlines() if line.startswith("todo"))  # noqa: E731
    assert paths(planned.output) == paths(explicit.output)  # the same cells as --beta 8: results are shared


def test_the_projects_example_trains_and_records_the_default_beta(tmp_path, monkeypatch):
    """The exact example, made tiny (one eps, one epoch, a 4-channel net): the cells record beta 8."""
    import json

    monkeypatch.chdir(tmp_path)
    tiny = ["--eps", "16", "--epochs", "1", "--evaluators", "clean", "--param", "models.small-cnn.width=4"]
    out = cli_run([*EXAMPLE, *tiny])
    assert out.exit_code == 0, out.output
    assert NOTE in out.output
    results = sorted(tmp_path.glob("results/*/*/*.json"))
    assert len(results) == 2
    for path in results:
        config = json.loads(path.read_text())["config"]
        assert config["injection"]["name"] == "low-freq" and config["beta"] == 8.0


def test_an_explicit_beta_0_still_injects_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = cli_run([*EXAMPLE, "--beta", "0", "--dry-run"])
    assert out.exit_code == 0, out.output
    assert "note:" not in out.output
    assert out.output.count("low-freq(beta=0)") == 4
