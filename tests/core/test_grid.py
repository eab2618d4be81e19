"""Grid parsing, validation and expansion."""

from __future__ import annotations

import pytest

from cobench.errors import ConfigError, UnknownComponentError
from cobench.grid.resolve import resolve
from cobench.grid.spec import GridSpec, parse_level


def test_expansion_is_the_cartesian_product_with_none_collapsing_beta(pm):
    spec = GridSpec(
        methods=["fgsm", "n-fgsm"], eps=[2, 4, 8], injections=["none", "low-freq"], betas=[4, 8], seeds=[0, 1, 2]
    )
    spec.normalize()
    cells = resolve(spec, pm.registry)
    # none: 2 methods x 3 eps x 1 beta x 3 seeds; low-freq: 2 x 3 x 2 betas x 3 seeds
    assert len(cells) == 2 * 3 * 3 + 2 * 3 * 2 * 3
    assert {c.beta for c in cells if c.injection.name == "none"} == {0.0}
    assert len({c.cell_id for c in cells}) == len(cells)


def test_an_injection_that_ignores_beta_collapses_the_beta_axis(pm):
    spec = GridSpec(methods=["fgsm"], eps=[8], injections=["low-pass", "low-freq"], betas=[4, 8, 16], seeds=[0])
    spec.normalize()
    cells = resolve(spec, pm.registry)
    assert [c.beta for c in cells if c.injection.name == "low-pass"] == [0.0]
    assert len([c for c in cells if c.injection.name == "low-freq"]) == 3


def test_cell_id_is_stable_and_sensitive_to_config(pm):
    a = resolve(GridSpec(methods=["fgsm"], eps=[8]), pm.registry)[0]
    b = resolve(GridSpec(methods=["fgsm"], eps=[8]), pm.registry)[0]
    c = resolve(GridSpec(methods=["fgsm"], eps=[8], seeds=[1]), pm.registry)[0]
    spec = GridSpec(methods=["fgsm"], eps=[8])
    spec.set_param("methods.fgsm.alpha=1.25")
    d = resolve(spec, pm.registry)[0]
    assert a.cell_id == b.cell_id
    assert len({a.cell_id, c.cell_id, d.cell_id}) == 3
    assert d.method.params["alpha"] == 1.25


@pytest.mark.parametrize("raw, value", [(8, 8.0), ("8", 8.0), ("8/255", 8.0), (0.5, 0.5), ("0", 0.0)])
def test_levels_are_parsed_in_255_units(raw, value):
    assert parse_level(raw, "eps") == value


@pytest.mark.parametrize("raw", [-1, 256, "abc", "nan", True])
def test_levels_out_of_range_or_malformed_are_rejected(raw):
    with pytest.raises(ConfigError) as info:
        parse_level(raw, "eps")
    assert "eps" in info.value.message


def test_toml_grid_with_cli_overrides(tmp_path, pm):
    path = tmp_path / "grid.toml"
    path.write_text("""
[grid]
methods = ["fgsm", "pgd"]
eps = [4, "8/255"]
injections = ["low-freq"]
betas = [2]
seeds = [0, 1]

[training]
epochs = 3
lr_max = 0.1

[params.methods.pgd]
steps = 3
""")
    spec = GridSpec.from_toml(path)
    assert spec.eps == [4.0, 8.0] and spec.training.epochs == 3
    spec.override(seeds=["5"], epochs=2, methods=None)
    assert spec.seeds == [5] and spec.training.epochs == 2 and spec.methods == ["fgsm", "pgd"]
    cells = resolve(spec, pm.registry)
    assert len(cells) == 2 * 2 * 1
    assert all(c.method.params["steps"] == 3 for c in cells if c.method.name == "pgd")


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("[grid]\nmethodz = ['fgsm']\n", "unknown grid key 'methodz'"),
        ("[training]\nepoch = 3\n", "unknown training key(s) epoch"),
        ("[grid]\neps = [300]\n", "out of range"),
        ("[training]\nepochs = 0\n", "training.epochs = 0: expected >= 1"),
        ("[grid\n", "not valid TOML"),
    ],
)
def test_bad_grid_files_give_clear_messages(tmp_path, text, fragment):
    path = tmp_path / "g.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        GridSpec.from_toml(path)
    assert fragment in info.value.message


def test_missing_grid_file():
    with pytest.raises(ConfigError, match="does not exist"):
        GridSpec.from_toml("/nonexistent/grid.toml")


def test_unknown_names_and_params_are_rejected(pm):
    with pytest.raises(UnknownComponentError, match="valid injections: .*low-freq"):
        resolve(GridSpec(injections=["low-frek"]), pm.registry)
    spec = GridSpec()
    spec.set_param("methods.pgd.stepz=3")
    with pytest.raises(ConfigError, match="no parameter 'stepz'; valid parameters: steps"):
        resolve(spec, pm.registry)
    with pytest.raises(ConfigError, match="KIND.COMPONENT.PARAM"):
        GridSpec().set_param("pgd.steps=3")


def test_eps_scaling_rule_applies_unless_overridden(pm):
    from cobench.api import Method

    class Scaled(Method):
        name = "scaled"

        def __init__(self, lam: float = 0.2):
            self.lam = lam

        @classmethod
        def defaults_for_eps(cls, eps255):
            return {"lam": 0.2 * eps255 / 8}

    pm.registry.components["methods"]["scaled"] = Scaled
    pm.registry.owners["methods"]["scaled"] = "test"
    cells = resolve(GridSpec(methods=["scaled"], eps=[4, 16]), pm.registry)
    assert [c.method.params["lam"] for c in cells] == [0.1, 0.4]
    spec = GridSpec(methods=["scaled"], eps=[4])
    spec.set_param("methods.scaled.lam=1.0")
    assert resolve(spec, pm.registry)[0].method.params["lam"] == 1.0
