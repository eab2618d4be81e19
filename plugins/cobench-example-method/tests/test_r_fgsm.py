"""R+FGSM: the cobench method contract, plus the algorithm's geometry checked by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cobench.api import Batch
from cobench.attacks import input_gradient
from cobench.errors import ConfigError
from cobench.testing import InputRecorder, MethodContract

EPS = 8 / 255


class TestRFGSMContract(MethodContract):
    """Every test of cobench's method contract, run against the installed plugin."""

    method_name = "r-fgsm"
    max_perturbation = 1.0  # R+FGSM never leaves the eps-ball


@pytest.mark.parametrize("alpha", [0.5, 0.25])
def test_random_signed_step_then_fgsm_step_from_there(cobench_pm, cobench_step_ctx, alpha):
    torch.manual_seed(0)
    x = torch.rand(32, 1, 8, 8) * 0.5 + 0.25  # interior: no clamping, the raw geometry is visible
    y = torch.randint(0, 3, (32,))
    model = InputRecorder(nn.Sequential(nn.Flatten(), nn.Linear(64, 3)), x)
    method = cobench_pm.registry.get("methods", "r-fgsm")(alpha=alpha)
    method.train_step(Batch(x, y, torch.arange(32)), cobench_step_ctx(model, EPS, seed=5))
    # the same signs the method drew from the cell's generator
    signs = torch.randn(x.shape, generator=torch.Generator().manual_seed(5)).sign()
    start = alpha * EPS * signs
    grad, _ = input_gradient(model.model, x, y, start)
    expected = start + (1 - alpha) * EPS * grad.sign()
    delta = model.inputs[-1] - x
    assert torch.allclose(delta, expected, atol=1e-6)
    assert delta.abs().max() <= EPS + 1e-6
    # coordinates where both steps agree reach eps exactly; elsewhere |2 alpha - 1| eps
    magnitudes = set(torch.round(delta.abs() / EPS, decimals=4).unique().tolist())
    assert magnitudes <= {1.0, round(abs(2 * alpha - 1), 4)}


def test_alpha_out_of_range_is_a_clear_error(cobench_pm):
    cls = cobench_pm.registry.get("methods", "r-fgsm")
    with pytest.raises(ConfigError, match="alpha"):
        cls(alpha=1.0)


def test_grid_with_the_plugin_records_it_as_the_owner(cobench_pm, cobench_tiny_grid, tmp_path):
    from cobench.run.runner import Runner

    summary = Runner(cobench_tiny_grid(["r-fgsm", "fgsm"]), tmp_path, options={"device": "cpu"}).run()
    assert summary.ran == 2 and not summary.failed
    owners = {r["config"]["method"]["name"]: r["plugins"]["methods"] for r in summary.results}
    assert owners == {"r-fgsm": "example_method", "fgsm": "cobench.methods.fgsm"}
