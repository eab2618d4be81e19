"""Bad values fail before any training, naming the key and what is valid (issue 12, Inputs)."""

from __future__ import annotations

import pytest

from cobench.errors import ConfigError
from cobench.grid.resolve import resolve
from cobench.grid.spec import GridSpec
from cobench.kinds import GRID_KINDS, KIND_NAMES
from cobench.params import check_range_declarations, component_problems, type_problem
from tests.conftest import cli_run


def resolve_with(pm, *params: str, **grid):
    spec = GridSpec.from_dict({"grid": {"methods": ["fgsm", "pgd"], "eps": [8], **grid}})
    for p in params:
        spec.set_param(p)
    return resolve(spec, pm.registry)


@pytest.mark.parametrize(
    "param, expected",
    [
        ("methods.fgsm.alpha=abc", "methods.fgsm.alpha = 'abc': expected a number"),
        ("evaluators.pgd.steps=1.5", "evaluators.pgd.steps = 1.5: expected an integer"),
        ("methods.pgd.steps=-3", "methods.pgd.steps = -3: expected >= 1"),
        ("methods.pgd.random_init=1", "methods.pgd.random_init = 1: expected a boolean"),
        ("models.small-cnn.width=0", "models.small-cnn.width = 0: expected >= 1"),
    ],
)
def test_a_bad_param_is_an_error_before_training(pm, param, expected):
    with pytest.raises(ConfigError) as info:
        resolve_with(pm, param)
    assert expected in info.value.message


def test_one_message_lists_every_problem(pm):
    with pytest.raises(ConfigError) as info:
        resolve_with(pm, "methods.fgsm.alpha=abc", "methods.pgd.steps=-3", "evaluators.pgd.steps=1.5")
    message = info.value.message
    assert message.startswith("3 invalid parameter value(s)")
    assert all(k in message for k in ("methods.fgsm.alpha", "methods.pgd.steps", "evaluators.pgd.steps"))


def test_good_values_resolve_and_ints_count_as_numbers(pm):
    cells = resolve_with(pm, "methods.fgsm.alpha=1", "methods.pgd.steps=3")
    assert {c.method.name for c in cells} == {"fgsm", "pgd"}


def test_cli_exits_nonzero_before_training(tmp_path):
    out = cli_run(["run", "--methods", "pgd", "--param", "methods.pgd.steps=-3", "--results-dir", str(tmp_path / "r")])
    assert out.exit_code != 0 and "methods.pgd.steps = -3: expected >= 1" in out.output
    assert not list((tmp_path / "r").rglob("*.json")) if (tmp_path / "r").exists() else True


def test_a_parameter_without_default_left_unset_is_named(pm):
    from cobench.api import Method

    class NeedsLam(Method):
        name = "needs-lam"

        def __init__(self, lam: float, alpha: float = 1.0):
            self.lam, self.alpha = lam, alpha

    problems = component_problems(NeedsLam, "methods", {"lam": None, "alpha": 1.0})
    assert problems == [
        "methods.needs-lam.lam is required (it has no default); set it, e.g. --param methods.needs-lam.lam=VALUE"
    ]
    assert component_problems(NeedsLam, "methods", {"lam": 2.0, "alpha": 1.0}) == []


@pytest.mark.parametrize(
    "value, hint, ok",
    [
        (3, int, True),
        (True, int, False),
        (3, float, True),
        (float("nan"), float, False),
        ("x", str, True),
        (None, int | None, True),
        ("a", int | None, False),
        ([1, 2], tuple[int, ...], True),
        ([1, "a"], tuple[int, ...], False),
    ],
)
def test_type_problem(value, hint, ok):
    assert (type_problem(value, hint) is None) == ok


def test_every_builtin_declares_well_formed_ranges(pm):
    for kind in KIND_NAMES:
        for name, cls in pm.registry.components[kind].items():
            check_range_declarations(f"{kind}.{name}", cls.ranges, cls.parameters())
            if kind in GRID_KINDS and cls.spec_arg is None:  # every built-in's defaults pass its own checks
                assert component_problems(cls, kind, cls.parameters()) == [], name


@pytest.mark.parametrize(
    "text, expected",
    [
        ('[training]\naugment = "no"\n', "training.augment = 'no': expected a boolean"),
        ('[training]\nepochs = "one"\n', "training.epochs = 'one': expected an integer"),
        ("[training]\nprobe_size = -5\n", "training.probe_size = -5: expected >= 1"),
        ("[evaluation]\neval_batch_size = 0\n", "training.eval_batch_size = 0: expected >= 1"),
        ("params = 5\n", "params must be a table"),
        ("training = 3\n", "[training] must be a table"),
        ("seeds = [99999999999999999999]\n", "seeds must be integers in 0..9223372036854775807"),
        ("seeds = [-1]\n", "seeds must be integers in 0.."),
    ],
)
def test_bad_grid_file_values(tmp_path, text, expected):
    path = tmp_path / "g.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        GridSpec.from_toml(path)
    assert expected in info.value.message


def test_binary_grid_file(tmp_path):
    path = tmp_path / "g.toml"
    path.write_bytes(bytes(range(256)))
    with pytest.raises(ConfigError, match="is not valid TOML"):
        GridSpec.from_toml(path)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--seeds", "99999999999999999999"], "seeds must be integers in 0.."),
        (["--results-dir", ""], "--results-dir is empty"),
        (["--methods", ""], "--methods '' is empty"),
        (["--eps", " , "], "--eps ' , ' is empty"),
    ],
)
def test_bad_cli_values(args, expected):
    out = cli_run(["run", "--dry-run", *args])
    assert out.exit_code != 0 and expected in out.output
