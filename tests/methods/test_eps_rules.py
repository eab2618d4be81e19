"""Published eps-scaling rules, and the grid applying them unless the user overrides a parameter."""

from __future__ import annotations

import math

import pytest

from cobench.grid.resolve import resolve
from cobench.grid.spec import GridSpec
from cobench.methods.elle import ELLE
from cobench.methods.grad_align import GradAlign

# grad_align_cos_lambda for eps = 1..16 in tml-epfl/understanding-fast-adv-training sh/exps_diff_eps_cifar10.sh
GRAD_ALIGN_SCRIPT = [
    0.027,
    0.036,
    0.047,
    0.063,
    0.084,
    0.112,
    0.150,
    0.200,
    0.267,
    0.356,
    0.474,
    0.632,
    0.843,
    1.124,
    1.500,
    2.000,
]


@pytest.mark.parametrize("eps", range(1, 17))
def test_grad_align_lambda_follows_the_published_per_eps_values(eps):
    assert math.isclose(GradAlign.defaults_for_eps(eps)["lam"], GRAD_ALIGN_SCRIPT[eps - 1], abs_tol=1e-3)


def test_grad_align_lambda_is_not_extrapolated_beyond_16():
    assert GradAlign.defaults_for_eps(40)["lam"] == 2.0
    assert GradAlign.defaults_for_eps(8)["lam"] == GradAlign().lam == 0.2


@pytest.mark.parametrize(
    "eps, lam", [(2, 1000), (8, 1000), (10, 5000), (16, 5000), (20, 5000), (22, 10000), (26, 10000), (40, 10000)]
)
def test_elle_lambda_by_eps_range(eps, lam):
    assert ELLE.defaults_for_eps(eps)["lam"] == lam


def test_grid_applies_eps_rules_but_keeps_user_overrides(pm):
    spec = GridSpec(methods=["grad-align", "elle", "rs-fgsm"], eps=[4, 16], evaluators=["clean"])
    cells = {(c.method.name, c.eps): c.method.params for c in resolve(spec, pm.registry)}
    assert math.isclose(cells[("grad-align", 16)]["lam"], 2.0) and math.isclose(
        cells[("grad-align", 4)]["lam"], 0.063, abs_tol=1e-3
    )
    assert cells[("elle", 16)]["lam"] == 5000 and cells[("elle", 4)]["lam"] == 1000
    assert cells[("rs-fgsm", 16)] == {"alpha": 1.25}
    spec.set_param("methods.elle.lam=77")
    cells = {(c.method.name, c.eps): c.method.params for c in resolve(spec, pm.registry)}
    assert cells[("elle", 16)]["lam"] == 77 and cells[("elle", 4)]["lam"] == 77
