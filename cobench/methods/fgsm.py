"""FGSM adversarial training (Goodfellow et al. 2015), the method that overfits catastrophically."""

from __future__ import annotations

import torch.nn.functional as F

from cobench import hookimpl
from cobench.api import Batch, Method, StepContext
from cobench.attacks import fgsm


class FGSM(Method):
    """FGSM-AT: zero init, one signed-gradient step of size alpha * eps, then train on it."""

    name = "fgsm"
    ranges = {"alpha": "> 0"}
    paper = "Goodfellow, Shlens & Szegedy, ICLR 2015; Wong, Rice & Kolter, ICLR 2020"

    def __init__(self, alpha: float = 1.0):
        self.alpha = alpha  # step size as a multiple of eps

    def train_step(self, batch: Batch, ctx: StepContext) -> None:
        eps = ctx.eps
        delta = fgsm(ctx.model, batch.x, batch.y, eps, alpha=self.alpha * eps, lower=ctx.lower, upper=ctx.upper)
        logits = ctx.model(batch.x + delta)
        ctx.update(F.cross_entropy(logits, batch.y), logits, batch.y)


@hookimpl
def register_methods(register):
    register(FGSM)
