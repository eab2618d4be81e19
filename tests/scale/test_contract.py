"""cobench.testing: every built-in method passes the method contract, and the contract
catches the mistakes it is there to catch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cobench import hookimpl
from cobench.api import Batch, Method, StepContext
from cobench.attacks import input_gradient
from cobench.plugins import PluginManager
from cobench.testing import MethodContract


def builtin_methods() -> list[str]:
    pm = PluginManager()
    pm.load_builtins()
    return pm.registry.names("methods")


@pytest.mark.parametrize("contract_method", builtin_methods())
class TestBuiltinMethodsKeepTheContract(MethodContract):
    pass


def test_fixtures_are_served(cobench_tiny_data, cobench_tiny_model, cobench_step_ctx, cobench_tiny_grid, cobench_pm):
    assert cobench_tiny_data.train_x.shape == (64, 1, 8, 8) and 0 <= cobench_tiny_data.train_x.min()
    assert cobench_tiny_model(cobench_tiny_data.train_x[:4]).shape == (4, 3)
    ctx = cobench_step_ctx(cobench_tiny_model, 8 / 255)
    assert isinstance(ctx, StepContext) and ctx.eps == pytest.approx(8 / 255)
    assert cobench_tiny_grid(["fgsm"]).training.epochs == 1
    assert "fgsm" in cobench_pm.registry.names("methods")


# --------------------------------------------------------------------------- methods that break it
def _signed_step(batch: Batch, ctx: StepContext) -> torch.Tensor:
    grad, _ = input_gradient(ctx.model, batch.x, batch.y, torch.zeros_like(batch.x))
    return ctx.eps * grad.sign()


class NoUpdate(Method):
    """Forgets to call ctx.update."""

    name = "bad-no-update"

    def train_step(self, batch, ctx):
        ctx.model(batch.x)


class Unclamped(Method):
    """FGSM without clamping x + delta to the image range."""

    name = "bad-unclamped"

    def train_step(self, batch, ctx):
        x = (batch.x + _signed_step(batch, ctx)).detach()
        logits = ctx.model(x)
        ctx.update(F.cross_entropy(logits, batch.y), logits, batch.y)


class GlobalRandom(Method):
    """Draws its noise from the global RNG instead of the cell's generator."""

    name = "bad-global-rng"

    def train_step(self, batch, ctx):
        x = (batch.x + ctx.clamp_delta(batch.x, ctx.eps * (2 * torch.rand_like(batch.x) - 1))).detach()
        logits = ctx.model(x)
        ctx.update(F.cross_entropy(logits, batch.y), logits, batch.y)


class OverReach(Method):
    """Steps 3 eps: fine in range, but over a declared max_perturbation of 1."""

    name = "bad-over-reach"

    def train_step(self, batch, ctx):
        x = (batch.x + ctx.clamp_delta(batch.x, 3 * _signed_step(batch, ctx))).detach()
        logits = ctx.model(x)
        ctx.update(F.cross_entropy(logits, batch.y), logits, batch.y)


class NaNDefault(Method):
    """A default that is not strict JSON."""

    name = "bad-nan-default"

    def __init__(self, alpha: float = float("nan")):
        self.alpha = alpha


class BadPlugin:
    @hookimpl
    def register_methods(self, register):
        for cls in (NoUpdate, Unclamped, GlobalRandom, OverReach, NaNDefault):
            register(cls)


@pytest.mark.parametrize(
    "test, method",
    [
        ("test_step_calls_update_with_a_finite_loss_and_keeps_train_mode", "bad-no-update"),
        ("test_inputs_stay_in_the_image_range", "bad-unclamped"),
        ("test_inputs_stay_in_the_image_range", "bad-over-reach"),
        ("test_deterministic_with_a_fixed_seed", "bad-global-rng"),
        ("test_parameters_are_json_and_construct_the_method", "bad-nan-default"),
        ("test_registered_through_an_entry_point", "bad-unclamped"),  # registered ad hoc, not by an entry point
    ],
)
def test_the_contract_fails_methods_that_break_it(pm, test, method):
    pm.register(BadPlugin(), "bad-plugin")
    contract = type("Contract", (MethodContract,), {"method_name": method, "max_perturbation": 1.0})()
    with pytest.raises(AssertionError):
        getattr(contract, test)(pm, method)


def test_the_contract_passes_a_correct_ad_hoc_method_on_the_checks_that_do_not_need_an_entry_point(pm):
    pm.register(BadPlugin(), "bad-plugin")
    contract = type("Contract", (MethodContract,), {"method_name": "bad-over-reach", "max_perturbation": 3.0})()
    contract.test_inputs_stay_in_the_image_range(pm, "bad-over-reach")
    contract.test_deterministic_with_a_fixed_seed(pm, "bad-over-reach")
