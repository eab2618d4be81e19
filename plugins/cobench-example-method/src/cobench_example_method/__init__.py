"""R+FGSM adversarial training as a cobench plugin.

Tramèr, Kurakin, Papernot, Goodfellow, Boneh & McDaniel, "Ensemble adversarial training:
attacks and defenses", ICLR 2018, Sec. 4.1: take a random signed step of size ``alpha * eps``,
then an FGSM step of size ``(1 - alpha) * eps`` from that point, so the perturbation stays in
the eps-ball; train on the result.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cobench import hookimpl
from cobench.api import Batch, Method, StepContext
from cobench.attacks import fgsm
from cobench.errors import ConfigError

__version__ = "0.1.0"


class RFGSM(Method):
    """R+FGSM: random signed step of alpha*eps, then an FGSM step of (1-alpha)*eps from there."""

    name = "r-fgsm"
    paper = "Tramèr, Kurakin, Papernot, Goodfellow, Boneh & McDaniel, 'Ensemble adversarial training', ICLR 2018"

    def __init__(self, alpha: float = 0.5):
        if not 0.0 <= alpha < 1.0:
            raise ConfigError(f"r-fgsm: alpha is the random step's share of eps and must be in [0, 1), got {alpha}")
        self.alpha = alpha

    def train_step(self, batch: Batch, ctx: StepContext) -> None:
        eps = ctx.eps
        signs = torch.randn(batch.x.shape, generator=ctx.generator, device=batch.x.device).sign()
        start = ctx.clamp_delta(batch.x, self.alpha * eps * signs)
        delta = fgsm(
            ctx.model, batch.x, batch.y, eps, alpha=(1 - self.alpha) * eps, init=start, lower=ctx.lower, upper=ctx.upper
        )
        logits = ctx.model(batch.x + delta)
        ctx.update(F.cross_entropy(logits, batch.y), logits, batch.y)


@hookimpl
def register_methods(register):
    register(RFGSM)
