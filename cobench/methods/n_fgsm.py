"""N-FGSM (de Jorge et al., NeurIPS 2022): noise augmentation and no clipping avoid CO."""
from __future__ import annotations

import torch.nn.functional as F

from cobench import hookimpl
from cobench.api import Batch, Method, StepContext
from cobench.attacks import fgsm


class NFGSM(Method):
    """N-FGSM: init U[-k*eps, k*eps] (k=2), FGSM step alpha*eps (alpha=1), no projection to the eps-ball."""

    name = "n-fgsm"
    ranges = {"k": ">= 0", "alpha": "> 0", "clip": ">= 0"}
    paper = "de Jorge, Bibi, Volpi, Sanyal, Torr, Rogez & Dokania, 'Make some noise', NeurIPS 2022"

    def __init__(self, k: float = 2.0, alpha: float = 1.0, clip: float = 0.0):
        self.k = k  # noise magnitude as a multiple of eps
        self.alpha = alpha  # step size as a multiple of eps
        self.clip = clip  # optional projection radius as a multiple of eps (0 = none, the paper's default)

    def train_step(self, batch: Batch, ctx: StepContext) -> None:
        eps = ctx.eps
        noise = ctx.uniform(batch.x, -self.k * eps, self.k * eps)
        delta = fgsm(ctx.model, batch.x, batch.y, eps, alpha=self.alpha * eps, init=noise, project=False,
                     lower=ctx.lower, upper=ctx.upper)
        if self.clip > 0:
            delta = ctx.clamp_delta(batch.x, delta.clamp(-self.clip * eps, self.clip * eps))
        logits = ctx.model(batch.x + delta)
        ctx.update(F.cross_entropy(logits, batch.y), logits, batch.y)


@hookimpl
def register_methods(register):
    register(NFGSM)
