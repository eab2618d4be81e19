"""Free adversarial training (Shafahi et al., NeurIPS 2019): minibatch replay with a persistent perturbation."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from cobench import hookimpl
from cobench.api import Batch, Method, StepContext, TrainSetup
from cobench.attacks import clamp_delta, sign_step
from cobench.errors import ConfigError


class FreeAT(Method):
    """Free-AT: replay each minibatch m=8 times; one backward gives both the weight and the delta update.

    Shafahi, Najibi, Ghiasi, Xu, Dickerson, Studer, Davis, Taylor & Goldstein, "Adversarial
    training for free!", NeurIPS 2019 (reference code: mahyarnajibi/FreeAdversarialTraining and
    locuslab/fast_adversarial ``train_free.py``). m = 8 for CIFAR-10 at 8/255; the runner divides
    the number of epochs by m so that the number of optimiser updates matches the other methods.
    The perturbation has the shape of a minibatch and persists across minibatches (it is not
    tied to samples); after every replay it moves by eps * sign(grad) and is projected to the
    eps-ball and the image range. Unlike the reference we also clamp the carried perturbation to
    the *new* minibatch's image range before its first replay, so every input is a valid image.
    """

    name = "free"
    ranges = {"replays": ">= 1", "alpha": "> 0"}
    paper = "Shafahi et al., 'Adversarial training for free!', NeurIPS 2019"

    def __init__(self, replays: int = 8, alpha: float = 1.0):
        if int(replays) < 1:
            raise ConfigError(f"free: replays must be >= 1, got {replays}")
        self.replays = int(replays)  # m, minibatch replays (read by the training loop)
        self.alpha = alpha  # delta step as a multiple of eps
        self.delta: torch.Tensor | None = None

    def setup(self, setup: TrainSetup) -> None:
        self.delta = None  # allocated with the first minibatch's shape

    def train_step(self, batch: Batch, ctx: StepContext) -> None:
        x, y, eps = batch.x, batch.y, ctx.eps
        n = len(x)
        if self.delta is None or len(self.delta) < n:
            grown = torch.zeros_like(x)
            if self.delta is not None:
                grown[: len(self.delta)] = self.delta
            self.delta = grown
        delta = clamp_delta(x, self.delta[:n], ctx.lower, ctx.upper)
        for _ in range(self.replays):
            leaf = delta.detach().requires_grad_(True)
            logits = ctx.model(x + leaf)
            ctx.update(F.cross_entropy(logits, y), logits, y)  # its backward also fills leaf.grad
            delta = sign_step(x, leaf, leaf.grad, self.alpha * eps, eps, ctx.lower, ctx.upper)
        self.delta[:n] = delta


@hookimpl
def register_methods(register):
    register(FreeAT)
