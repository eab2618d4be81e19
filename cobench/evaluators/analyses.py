"""The paper's accuracy analyses of what a model learned from the injected feature.

``carrier-acc``: accuracy on carrier-only images ``0 + beta * V[y]`` (one per class, built
by the injection itself, so subtractive and perp variants give ``-beta V[y]`` and
``beta V[y]`` respectively); high means the model uses the injected feature. ``carrier_acc``
is None for injections without carriers (``none``, ``low-pass``).
``no-injection-acc``: accuracy on the original test set, before injection.
(Ortiz-Jimenez, de Jorge et al., TMLR 2023, the ``carrier_loader`` and clean-test analyses.)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cobench import hookimpl
from cobench.api import EvalContext, Evaluator
from cobench.attacks import accuracy

PAPER = "Ortiz-Jimenez, de Jorge et al., TMLR 2023"


def carrier_images(ctx: EvalContext) -> tuple[torch.Tensor, torch.Tensor] | None:
    """One carrier-only image per class (the injection applied to a black image), or None."""
    carriers = getattr(ctx.injection, "carriers", None)
    if carriers is None:
        return None
    y = torch.arange(ctx.num_classes, device=ctx.device)
    zeros = torch.zeros((ctx.num_classes, *ctx.test_x.shape[1:]), device=ctx.device, dtype=ctx.test_x.dtype)
    return ctx.injection.apply(zeros, y), y


class CarrierAccuracy(Evaluator):
    """Accuracy on carrier-only images 0 + beta * V[y], one per class (None without carriers); per epoch too."""

    name = "carrier-acc"
    paper = PAPER

    def __init__(self, per_epoch: bool = True):
        self.per_epoch = per_epoch

    def on_epoch_end(self, model: nn.Module, ctx: EvalContext, epoch: int) -> dict[str, Any] | None:
        # a probe of None (no carriers) still makes the curve: Any, as the API's probes are floats
        if not self.per_epoch:
            return None
        return {"probe_carrier_acc": self.evaluate(model, ctx)["carrier_acc"]}

    def evaluate(self, model: nn.Module, ctx: EvalContext) -> dict[str, float | None]:
        data = carrier_images(ctx)
        return {"carrier_acc": None if data is None else accuracy(model, *data, ctx.batch_size)}


class NoInjectionAccuracy(Evaluator):
    """Accuracy on the original test set with the injection removed (clean, unperturbed); per
    epoch too with ``per_epoch=True``, so a curve shows when the model turns to the feature
    (off by default: stored cells were hashed without the parameter)."""

    name = "no-injection-acc"
    paper = PAPER
    recorded_when_set = ("per_epoch",)

    def __init__(self, per_epoch: bool = False):
        self.per_epoch = per_epoch

    def on_epoch_end(self, model: nn.Module, ctx: EvalContext, epoch: int) -> dict[str, float] | None:
        if not self.per_epoch:
            return None
        return {"probe_no_injection_acc": self.evaluate(model, ctx)["no_injection_acc"]}

    def evaluate(self, model: nn.Module, ctx: EvalContext) -> dict[str, float]:
        return {"no_injection_acc": accuracy(model, ctx.clean_test_x, ctx.test_y, ctx.batch_size)}


@hookimpl
def register_evaluators(register):
    register(CarrierAccuracy)
    register(NoInjectionAccuracy)
