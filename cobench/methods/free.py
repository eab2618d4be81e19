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
    training for free!", NeurIPS 2019. Follows the CIFAR-10 loop of locuslab/fast_adversarial
    ``CIFAR10/train_free.py`` (the authors' mahyarnajibi/FreeAdversarialTraining ``main_free.py``
    is the ImageNet version of the same loop): the perturbation has the shape of a full minibatch
    and persists across minibatches (it is not tied to samples); after every replay it moves by
    eps * sign(grad) (``alpha`` = 1), is projected to the eps-ball, and its rows of the current
    minibatch are clamped to that minibatch's image range; the optimiser steps once per replay.

    Training length: cobench's ``epochs`` counts epochs' worth of *optimiser updates*, so Free-AT
    makes ceil(epochs / m) passes over the data, m updates per minibatch, and the LR schedule
    runs over all updates (as ``train_free.py``'s ``lr_steps = epochs * len(loader) * replays``).
    Wong et al.'s Free-AT run (``--epochs 10 --minibatch-replays 8 --lr-max 0.04``) is therefore
    ``--methods free --epochs 80 --lr-max 0.04`` here; the grid's default LR (0.2) is the FGSM
    papers', not Free-AT's. Knowingly differs: we clamp the carried perturbation to the *new*
    minibatch's image range before its first replay (the reference feeds ``X + delta`` unclamped
    there), so every input is a valid image; ``main_free.py`` instead clamps the input and never
    the stored perturbation.
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
            assert leaf.grad is not None
            delta = sign_step(x, leaf, leaf.grad, self.alpha * eps, eps, ctx.lower, ctx.upper)
        self.delta[:n] = delta


@hookimpl
def register_methods(register):
    register(FreeAT)
