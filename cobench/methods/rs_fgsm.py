"""RS-FGSM (Wong, Rice & Kolter, ICLR 2020): FGSM from a random start inside the eps-ball."""

from __future__ import annotations

import torch.nn.functional as F

from cobench import hookimpl
from cobench.api import Batch, Method, StepContext
from cobench.attacks import fgsm


class RSFGSM(Method):
    """RS-FGSM: init U[-eps, eps], one signed-gradient step of alpha*eps (alpha=1.25), projected to the eps-ball.

    Wong, Rice & Kolter, "Fast is better than free: revisiting adversarial training", ICLR 2020
    (reference code: locuslab/fast_adversarial, ``train_fgsm.py``: ``--alpha 10`` at
    ``--epsilon 8``). The step is stated relative to eps, so it scales with eps as the paper
    prescribes (alpha = 1.25 eps); no other hyperparameter depends on eps.
    """

    name = "rs-fgsm"
    ranges = {"alpha": "> 0"}
    paper = "Wong, Rice & Kolter, 'Fast is better than free: revisiting adversarial training', ICLR 2020"

    def __init__(self, alpha: float = 1.25):
        self.alpha = alpha  # step size as a multiple of eps (10/255 at 8/255)

    def train_step(self, batch: Batch, ctx: StepContext) -> None:
        eps = ctx.eps
        init = ctx.uniform(batch.x, -eps, eps)
        delta = fgsm(
            ctx.model,
            batch.x,
            batch.y,
            eps,
            alpha=self.alpha * eps,
            init=init,
            project=True,
            lower=ctx.lower,
            upper=ctx.upper,
        )
        logits = ctx.model(batch.x + delta)
        ctx.update(F.cross_entropy(logits, batch.y), logits, batch.y)


@hookimpl
def register_methods(register):
    register(RSFGSM)
