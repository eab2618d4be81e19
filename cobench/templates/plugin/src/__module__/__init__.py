"""The __name__ method for cobench."""
from __future__ import annotations

import torch.nn.functional as F

from cobench import hookimpl
from cobench.api import Batch, Method, StepContext
from cobench.attacks import fgsm


class __class__(Method):
    """FGSM from a uniform random start in the eps-ball (replace with your method)."""

    name = "__name__"
    paper = ""  # cite the algorithm: "Authors, 'Title', Venue Year"

    def __init__(self, alpha: float = 1.25):
        self.alpha = alpha

    def train_step(self, batch: Batch, ctx: StepContext) -> None:
        start = ctx.uniform(batch.x, -ctx.eps, ctx.eps)
        delta = fgsm(ctx.model, batch.x, batch.y, ctx.eps, alpha=self.alpha * ctx.eps, init=start,
                     lower=ctx.lower, upper=ctx.upper)
        logits = ctx.model(batch.x + delta)
        ctx.update(F.cross_entropy(logits, batch.y), logits, batch.y)


@hookimpl
def register_methods(register):
    register(__class__)
