"""FGSM-PGI (Jia et al., ECCV 2022): prior-guided initialisation carried across epochs (FGSM-MEP)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from cobench import hookimpl
from cobench.api import Batch, Method, StepContext, TrainSetup
from cobench.attacks import clamp_delta, sign_step
from cobench.errors import ConfigError


def smoothed_cross_entropy(logits: Tensor, y: Tensor, confidence: float) -> Tensor:
    """Cross-entropy against targets with ``confidence`` on the true class and the rest spread evenly."""
    k = logits.shape[1]
    target = torch.full_like(logits, (1.0 - confidence) / max(1, k - 1))
    target.scatter_(1, y[:, None], confidence)
    return -(target * F.log_softmax(logits, dim=1)).sum(1).mean()


class FGSMPGI(Method):
    """FGSM-PGI (FGSM-MEP): FGSM from a per-sample prior kept across epochs, plus a prior-guided logit penalty.

    Jia, Zhang, Wei, Wu, Ma, Cao & Cao, "Prior-guided adversarial initialization for fast
    adversarial training", ECCV 2022 (reference code: jiaxiaojunQAQ/FGSM-PGI, ``FGSM_MEP.py``).
    Per sample i (found through ``Batch.index``): start from the prior p_i (random corners
    eps*sign(U) at the start and every ``reset_every`` epochs), take g = grad of the smoothed loss
    at x + p_i, train on delta = clip(p_i + alpha*eps*sign(g)), and store the next prior
    clip(p_i + alpha*eps*sign(m_i)) with momentum m_i <- g / ||g||_1 + decay * m_i. The training
    loss is the label-smoothed CE at x + delta plus lam * MSE between the logits at x + delta and
    at x + p_i (both differentiated). Defaults are the reference's CIFAR-10 values at 8/255:
    alpha = 1 (step 8/255), lam = 10, decay 0.3, true-class confidence 0.6, reset every 40 epochs.
    Deviation: ||g||_1 is taken per sample, as the paper's equation writes it; the reference code
    normalises by the L1 norm of the whole batch's gradient. No eps-scaling rule is published.
    """

    name = "fgsm-pgi"
    ranges = {"alpha": "> 0", "lam": ">= 0", "decay": (">= 0", "<= 1"), "confidence": (">= 0", "<= 1")}
    paper = "Jia et al., 'Prior-guided adversarial initialization for fast adversarial training', ECCV 2022"

    def __init__(
        self, alpha: float = 1.0, lam: float = 10.0, decay: float = 0.3, confidence: float = 0.6, reset_every: int = 40
    ):
        if reset_every < 1:
            raise ConfigError(f"fgsm-pgi: reset_every must be >= 1 epoch, got {reset_every}")
        self.alpha = alpha  # step size as a multiple of eps
        self.lam = lam  # weight of the prior-guided logit regularizer
        self.decay = decay  # momentum decay of the gradient prior
        self.confidence = confidence  # label smoothing: target probability of the true class
        self.reset_every = reset_every  # epochs between prior resets
        self.prior: Tensor | None = None
        self.momentum: Tensor | None = None

    def setup(self, setup: TrainSetup) -> None:
        self._setup = setup
        self._reset(setup)
        self._last_epoch = 0

    def _reset(self, setup: TrainSetup) -> None:
        shape = (setup.n_train, *setup.image_shape)
        u = torch.rand(shape, generator=setup.generator, device=setup.device) * 2 - 1
        self.prior = setup.eps * u.sign()
        self.momentum = torch.zeros(shape, device=setup.device)

    def train_step(self, batch: Batch, ctx: StepContext) -> None:
        if self.prior is None or self.momentum is None:  # set together by _reset
            raise RuntimeError("fgsm-pgi: setup() was not called before training")
        if ctx.epoch != self._last_epoch:
            self._last_epoch = ctx.epoch
            if ctx.epoch % self.reset_every == 0:
                self._reset(self._setup)
        x, y, idx, eps = batch.x, batch.y, batch.index, ctx.eps
        prior = clamp_delta(x, self.prior[idx], ctx.lower, ctx.upper).requires_grad_(True)
        prior_logits = ctx.model(x + prior)
        (grad,) = torch.autograd.grad(
            smoothed_cross_entropy(prior_logits, y, self.confidence), prior, retain_graph=True
        )
        l1 = grad.flatten(1).abs().sum(1).clamp_min(1e-12).view(-1, *([1] * (x.dim() - 1)))
        momentum = grad / l1 + self.decay * self.momentum[idx]
        step = self.alpha * eps
        delta = sign_step(x, prior, grad, step, eps, ctx.lower, ctx.upper)
        next_prior = sign_step(x, prior, momentum, step, eps, ctx.lower, ctx.upper)
        logits = ctx.model(x + delta)
        loss = smoothed_cross_entropy(logits, y, self.confidence) + self.lam * F.mse_loss(logits, prior_logits)
        ctx.update(loss, logits, y)
        self.prior[idx] = next_prior
        self.momentum[idx] = momentum.detach()


@hookimpl
def register_methods(register):
    register(FGSMPGI)
