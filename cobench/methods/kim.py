"""Kim, Lee & Lee (AAAI 2021): check several points along the FGSM direction and train on the first one
that is misclassified."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cobench import hookimpl
from cobench.api import Batch, Method, StepContext
from cobench.attacks import clamp_delta, model_mode, sample_gradients, sign_step
from cobench.errors import ConfigError


@torch.no_grad()
def first_misclassified(model: nn.Module, x: Tensor, y: Tensor, delta: Tensor, c: int, undecided: Tensor) -> Tensor:
    """Per-sample scale in {1/c, ..., (c-1)/c, 1}: the smallest checkpoint ``x + (k/c) delta`` the model
    misclassifies, or 1 (the full perturbation) when none of the intermediate ones is.

    Only samples flagged ``undecided`` are decided here; the others get scale 1 (the caller
    overrides them). Every checkpoint is evaluated on the whole batch (the model is in eval mode,
    so each sample's prediction is its own) and chosen with masks: a training step never waits
    for the device (no host sync).
    """
    scale = torch.ones(len(x), device=x.device, dtype=x.dtype)
    todo = undecided.clone()
    for k in range(1, c):
        hit = todo & (model(x + (k / c) * delta).argmax(1) != y)
        scale = torch.where(hit, torch.full_like(scale, k / c), scale)
        todo = todo & ~hit
    return scale


class KimCheckpoints(Method):
    """Kim et al.: RS-FGSM step, then train on the first of c=3 checkpoints x + k/c*delta that is misclassified.

    Kim, Lee & Lee, "Understanding catastrophic overfitting in single-step adversarial
    training", AAAI 2021 (reference code: Harry24k/catastrophic-overfitting,
    ``defenses/trainers/co_adv_trainer.py``: ``COAdvTrainer`` and ``CustomFFGSM``). The perturbation
    is RS-FGSM's (uniform start, step alpha = 1.25 eps, projected); samples already misclassified
    at the random start are trained on clean; for the others the checkpoints k/c * delta,
    k = 1..c-1, are evaluated without gradients, and the smallest misclassified one is used (the
    full delta if none is). The attack and the checkpoints run with the model in eval mode:
    ``CustomFFGSM`` inherits torchattacks 2.12's ``Attack.__call__`` (the version the reference
    pins), which calls ``model.eval()`` around every attack, and the trainer calls
    ``model.eval()`` for the checkpoints; only the training pass is in train mode. As in the reference, "misclassified at
    the start" uses the logits of the attack's own forward pass at the random start, not a
    separate clean pass. c = 3 and alpha are the paper's CIFAR-10 values; they are stated
    relative to eps and no other eps rule is published.
    """

    name = "kim"
    ranges = {"c": ">= 1", "alpha": "> 0"}
    paper = "Kim, Lee & Lee, 'Understanding catastrophic overfitting in single-step adversarial training', AAAI 2021"

    def __init__(self, c: int = 3, alpha: float = 1.25):
        if c < 1:
            raise ConfigError(f"kim: c (number of checkpoints) must be >= 1, got {c}")
        self.c = c
        self.alpha = alpha  # RS-FGSM step as a multiple of eps

    def train_step(self, batch: Batch, ctx: StepContext) -> None:
        x, y, eps = batch.x, batch.y, ctx.eps
        init = clamp_delta(x, ctx.uniform(x, -eps, eps), ctx.lower, ctx.upper)
        with model_mode(ctx.model, training=False):  # torchattacks' Attack.__call__ and the trainer: eval
            grad, _, start_logits = sample_gradients(ctx.model, x + init, y)
            delta = sign_step(x, init, grad, self.alpha * eps, eps, ctx.lower, ctx.upper)
            wrong_at_start = start_logits.detach().argmax(1) != y
            scale = first_misclassified(ctx.model, x, y, delta, self.c, ~wrong_at_start)
        scale = torch.where(wrong_at_start, torch.zeros_like(scale), scale)
        chosen = scale.view(-1, *([1] * (x.dim() - 1))) * delta
        logits = ctx.model(x + chosen)
        ctx.update(F.cross_entropy(logits, y), logits, y)


@hookimpl
def register_methods(register):
    register(KimCheckpoints)
