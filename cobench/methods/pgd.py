"""PGD adversarial training (Madry et al., ICLR 2018): the expensive multi-step reference."""
from __future__ import annotations

import torch.nn.functional as F

from cobench import hookimpl
from cobench.api import Batch, Method, StepContext
from cobench.attacks import pgd


class PGDAT(Method):
    """PGD-AT: `steps` signed-gradient steps of alpha*eps from a uniform start, projected to the eps-ball."""

    name = "pgd"
    ranges = {"steps": ">= 1", "alpha": "> 0"}
    paper = "Madry, Makelov, Schmidt, Tsipras & Vladu, ICLR 2018"

    def __init__(self, steps: int = 10, alpha: float = 0.25, random_init: bool = True):
        self.steps = steps
        self.alpha = alpha  # step size as a multiple of eps (2/255 at eps=8/255)
        self.random_init = random_init

    def train_step(self, batch: Batch, ctx: StepContext) -> None:
        eps = ctx.eps
        delta = pgd(ctx.model, batch.x, batch.y, eps, alpha=self.alpha * eps, steps=self.steps,
                    random_init=self.random_init, generator=ctx.generator, lower=ctx.lower, upper=ctx.upper)
        logits = ctx.model(batch.x + delta)
        ctx.update(F.cross_entropy(logits, batch.y), logits, batch.y)


@hookimpl
def register_methods(register):
    register(PGDAT)
