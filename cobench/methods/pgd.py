"""PGD adversarial training (Madry et al., ICLR 2018): the expensive multi-step reference."""

from __future__ import annotations

import torch.nn.functional as F

from cobench import hookimpl
from cobench.api import Batch, Method, StepContext
from cobench.attacks import pgd


class PGDAT(Method):
    """PGD-AT: `steps` signed-gradient steps of alpha*eps from a uniform start, projected to the eps-ball.

    ``step_size`` (in /255 units, 0 = unset) replaces the relative step by an absolute one at every eps, as
    gortizji/co_features writes it (``injected_feature_cifar_pgd_train.py`` line 86 and
    ``low_pass_pgd_train.py`` line 61: ``alpha = cfg.alpha / 255`` with ``alpha: 2`` in their
    configs): 2/255 at every eps, where ``alpha = 0.25`` gives 0.5/255 at 2/255 and 3/255 at 12/255.
    A cell records ``step_size`` only when it is set (cells stored before it keep their identity).
    """

    name = "pgd"
    ranges = {"steps": ">= 1", "alpha": "> 0", "step_size": ">= 0"}
    paper = "Madry, Makelov, Schmidt, Tsipras & Vladu, ICLR 2018"
    recorded_when_set = ("step_size",)

    def __init__(self, steps: int = 10, alpha: float = 0.25, random_init: bool = True, step_size: float = 0.0):
        self.steps = steps
        self.alpha = alpha  # step size as a multiple of eps (2/255 at eps=8/255)
        self.random_init = random_init
        self.step_size = step_size  # absolute step in /255 units; when > 0, alpha is not used (0: alpha * eps)

    def train_step(self, batch: Batch, ctx: StepContext) -> None:
        eps = ctx.eps
        # an absolute step ramps with an eps warm-up as the relative one does (co_features' warmup_scale * alpha)
        step = self.step_size / 255 * ctx.eps_scale if self.step_size > 0 else self.alpha * eps
        delta = pgd(
            ctx.model,
            batch.x,
            batch.y,
            eps,
            alpha=step,
            steps=self.steps,
            random_init=self.random_init,
            generator=ctx.generator,
            lower=ctx.lower,
            upper=ctx.upper,
        )
        logits = ctx.model(batch.x + delta)
        ctx.update(F.cross_entropy(logits, batch.y), logits, batch.y)


@hookimpl
def register_methods(register):
    register(PGDAT)
