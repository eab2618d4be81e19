"""ZeroGrad and MultiGrad (Golgooni et al. 2021): FGSM that ignores unreliable input-gradient coordinates."""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor

from cobench import hookimpl
from cobench.api import Batch, Method, StepContext
from cobench.attacks import clamp_delta, input_gradient, sign_step
from cobench.errors import ConfigError

PAPER = (
    "Golgooni, Saberi, Eskandar & Rohban, 'ZeroGrad: mitigating and explaining catastrophic "
    "overfitting in FGSM adversarial training', arXiv:2103.15476, 2021"
)


def row_quantile(values: Tensor, q: float) -> Tensor:
    """The q-quantile of each row with linear interpolation, like ``torch.quantile(values, q, dim=1)``
    but without its input-size limit (ImageNet-sized batches exceed it)."""
    d = values.shape[1]
    s = values.sort(dim=1).values
    pos = q * (d - 1)
    lo = int(pos)
    hi = min(lo + 1, d - 1)
    w = pos - lo
    return s[:, lo] * (1 - w) + s[:, hi] * w


def zero_small(grad: Tensor, q: float) -> Tensor:
    """Zero, per sample, the coordinates whose |grad| is below that sample's q-quantile of |grad|."""
    threshold = row_quantile(grad.abs().flatten(1), q).view(-1, *([1] * (grad.dim() - 1)))
    return torch.where(grad.abs() < threshold, torch.zeros_like(grad), grad)


def consensus(grads: list[Tensor], threshold: int) -> Tensor:
    """Sum of gradient signs, zeroed where fewer than ``threshold`` of the samples agree on the sign.

    Follows the reference rule ``|sum of signs| < threshold - (samples - threshold) -> 0``; with
    ``threshold = samples`` a coordinate survives only if every sample has the same (non-zero) sign.
    """
    s = cast(Tensor, sum(g.sign() for g in grads))  # grads is never empty (samples >= 1)
    need = threshold - (len(grads) - threshold)
    return torch.where(s.abs() < need, torch.zeros_like(s), s)


class ZeroGrad(Method):
    """ZeroGrad: RS-FGSM (step 2*eps) with the q=0.35 smallest-|grad| coordinates of each sample zeroed.

    Golgooni et al. 2021 (reference code: rohban-lab/catastrophic_overfitting, ``train_cifar.py``;
    CIFAR-10 command ``--attack=zerograd --zero-qval=0.35`` with the defaults ``--fgsm-alpha 2``
    (times eps) and ``--fgsm-init random``). Zeroed coordinates keep their random start. The paper
    tunes q per dataset (0.35 CIFAR-10, 0.45 CIFAR-100, 0.7 SVHN) but publishes no rule for
    scaling it with eps, so q does not change with eps here.
    """

    name = "zerograd"
    ranges = {"q": (">= 0", "<= 1"), "alpha": "> 0"}
    paper = PAPER

    def __init__(self, q: float = 0.35, alpha: float = 2.0, random_init: bool = True):
        if not 0.0 <= q < 1.0:
            raise ConfigError(f"zerograd: q must be in [0, 1), got {q}")
        self.q = q  # quantile of |grad| below which coordinates are zeroed
        self.alpha = alpha  # step size as a multiple of eps (projected to the eps-ball)
        self.random_init = random_init

    def train_step(self, batch: Batch, ctx: StepContext) -> None:
        x, y, eps = batch.x, batch.y, ctx.eps
        init = ctx.uniform(x, -eps, eps) if self.random_init else torch.zeros_like(x)
        init = clamp_delta(x, init, ctx.lower, ctx.upper)
        grad, _ = input_gradient(ctx.model, x, y, init)
        delta = sign_step(x, init, zero_small(grad, self.q), self.alpha * eps, eps, ctx.lower, ctx.upper)
        logits = ctx.model(x + delta)
        ctx.update(F.cross_entropy(logits, y), logits, y)


class MultiGrad(Method):
    """MultiGrad: gradients at 3 random points of the eps-ball; step eps*sign only where all signs agree.

    Golgooni et al. 2021 (reference code: rohban-lab/catastrophic_overfitting; CIFAR-10 command
    ``--attack=multigrad --multi-samps=3``, threshold = all samples, step ``--fgsm-alpha 2`` times
    eps from a zero start, projected to the eps-ball, so the result is eps*sign or 0). The random
    points are evaluated in separate forward passes, as the reference does without
    ``--multi-parallel``. No eps-scaling rule is published.
    """

    name = "multigrad"
    ranges = {"samples": ">= 1", "threshold": ">= 0", "alpha": "> 0"}
    paper = PAPER

    def __init__(self, samples: int = 3, threshold: int = 0, alpha: float = 2.0):
        if samples < 1 or not 0 <= threshold <= samples:
            raise ConfigError(f"multigrad: need samples >= 1 and 0 <= threshold <= samples, got {samples}, {threshold}")
        self.samples = samples  # random points in the eps-ball
        self.threshold = threshold  # how many must agree on the sign (0 = all of them)
        self.alpha = alpha  # step size as a multiple of eps (projected to the eps-ball)

    def train_step(self, batch: Batch, ctx: StepContext) -> None:
        x, y, eps = batch.x, batch.y, ctx.eps
        grads = []
        for _ in range(self.samples):
            start = clamp_delta(x, ctx.uniform(x, -eps, eps), ctx.lower, ctx.upper)
            grads.append(input_gradient(ctx.model, x, y, start)[0])
        direction = consensus(grads, self.threshold or self.samples)
        delta = sign_step(x, torch.zeros_like(x), direction, self.alpha * eps, eps, ctx.lower, ctx.upper)
        logits = ctx.model(x + delta)
        ctx.update(F.cross_entropy(logits, y), logits, y)


@hookimpl
def register_methods(register):
    register(ZeroGrad)
    register(MultiGrad)
