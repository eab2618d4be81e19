"""CURE (Moosavi-Dezfooli et al., CVPR 2019): curvature regularization by a finite difference of gradients."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cobench import hookimpl
from cobench.api import Batch, Method, StepContext
from cobench.attacks import model_mode


def curvature_direction(model: nn.Module, x: Tensor, y: Tensor, length: Tensor | float) -> Tensor:
    """``z = length * sign(g) / ||sign(g)||_2`` per sample, g the input gradient of the mean loss at x:
    the reference's ``_find_z`` (its +1e-7 guards included)."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y), x)
    z = grad.sign()
    norms = z.reshape(len(z), -1).norm(dim=1).view(-1, *([1] * (x.dim() - 1)))
    return (length * (z + 1e-7) / (norms + 1e-7)).detach()


def curvature_regularizer(model: nn.Module, x: Tensor, y: Tensor, z: Tensor) -> Tensor:
    """mean_i ||grad_x [L(x + z) - L(x)]_i||_2, L the *mean* cross-entropy over the batch (so each
    row carries the reference's 1/batch factor); unsquared, differentiated through both gradients
    (the reference's ``regularizer`` without lambda)."""
    x = x.detach().requires_grad_(True)
    difference = F.cross_entropy(model(x + z.detach()), y) - F.cross_entropy(model(x), y)
    (grad_diff,) = torch.autograd.grad(difference, x, create_graph=True)
    return grad_diff.reshape(len(x), -1).norm(dim=1).sum() / len(x)


class CURE(Method):
    """CURE: CE(x) + lam * mean ||grad L(x + z) - grad L(x)||_2, z along sign(grad L(x)), BatchNorm in eval mode.

    Moosavi-Dezfooli, Fawzi, Uesato & Frossard, "Robustness via curvature regularization, and
    vice versa", CVPR 2019. Follows ``CURE/CURE.py`` of F-Salehi/CURE_robustness, a public
    implementation (we found no code released by the authors): the data term is the clean cross-entropy (model in train mode); the direction z is
    h * sign(g) / ||sign(g)||_2 with g the input gradient of the batch-mean loss; the regularizer is
    the unsquared L2 norm of the difference of input gradients of the batch-mean loss at x + z and
    at x, averaged over the batch and weighted by lambda = 4; z and the regularizer are computed
    with the model in eval mode (BatchNorm on running statistics), both gradients differentiated.

    Knowingly differs: the reference's h is an absolute L2 length in its input units (its
    ``train`` default is 3, ramped by the caller); here the L2 length is ``h * eps * sqrt(d)``
    (d = pixels x channels), the length of eps * sign(g), so h = 1 puts x + z at the FGSM point of
    the eps-ball at every eps (the CO literature's single-step use of CURE; no eps rule is
    published). ``x + z`` is clamped to the image box (the reference does not clamp). Gradients
    are in [0, 1] pixel units; the reference takes them in its loader's input units.
    """

    name = "cure"
    paper = "Moosavi-Dezfooli, Fawzi, Uesato & Frossard, 'Robustness via curvature regularization, and vice versa', CVPR 2019"

    def __init__(self, lam: float = 4.0, h: float = 1.0):
        self.lam = lam  # curvature penalty weight (lambda_ in the reference)
        self.h = h  # L2 length of z as a multiple of ||eps * sign(g)||_2 = eps * sqrt(d)

    def train_step(self, batch: Batch, ctx: StepContext) -> None:
        x, y, eps = batch.x, batch.y, ctx.eps
        logits = ctx.model(x)  # the data term, in train mode as the reference
        length = self.h * eps * math.sqrt(x[0].numel())
        with model_mode(ctx.model, training=False):
            z = ctx.clamp_delta(x, curvature_direction(ctx.model, x, y, length))
            reg = curvature_regularizer(ctx.model, x, y, z)
        ctx.update(F.cross_entropy(logits, y) + self.lam * reg, logits, y)


@hookimpl
def register_methods(register):
    register(CURE)
