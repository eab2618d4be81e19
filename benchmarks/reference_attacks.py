"""The reference way's FGSM-AT training step and its evaluation attack, written as the reference
repositories write them; shared by ``speed.py`` and ``grid_throughput.py`` so both time the same code."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def reference_fgsm(model: nn.Module, X: Tensor, y: Tensor, eps: float) -> Tensor:
    """locuslab/fast_adversarial ``CIFAR10/train_fgsm.py``'s zero-init FGSM, as written there: a
    full ``backward()`` (parameter gradients included, discarded by the next ``zero_grad``) to read
    ``delta.grad``."""
    delta = torch.zeros_like(X, requires_grad=True)
    output = model(X + delta)
    loss = F.cross_entropy(output, y)
    loss.backward()
    grad = delta.grad.detach()
    delta.data = torch.clamp(delta + eps * torch.sign(grad), -eps, eps)
    delta.data = torch.max(torch.min(delta, 1 - X), 0 - X)
    return delta.detach()


def reference_fgsm_step(
    model: nn.Module, opt: torch.optim.Optimizer, scheduler, X: Tensor, y: Tensor, eps: float
) -> tuple[float, int]:
    """One iteration of ``train_fgsm.py``'s training loop: the attack, the update, the scheduler
    step and its per-step ``.item()`` bookkeeping (part of the cost being timed). Returns the
    batch's summed loss and correct count, as that loop accumulates them."""
    delta = reference_fgsm(model, X, y, eps)
    output = model(X + delta)
    loss = F.cross_entropy(output, y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    loss_sum = loss.item() * y.size(0)
    correct = (output.max(1)[1] == y).sum().item()
    scheduler.step()
    return loss_sum, correct


def reference_restart_pgd(
    model: nn.Module, X: Tensor, y: Tensor, eps: float, alpha: float, steps: int, restarts: int
) -> Tensor:
    """gortizji/co_features' ``RestartPGD``: every restart attacks every sample at every step; the
    highest-loss delta is kept."""
    max_loss = torch.zeros(len(y), device=X.device)
    max_delta = torch.zeros_like(X)
    for _ in range(restarts):
        delta = torch.zeros_like(X).uniform_(-eps, eps)
        delta = torch.max(torch.min(delta, 1 - X), 0 - X)
        delta.requires_grad = True
        for _ in range(steps):
            loss = F.cross_entropy(model(X + delta), y)
            loss.backward()
            delta.data = torch.clamp(delta + alpha * torch.sign(delta.grad.detach()), -eps, eps)
            delta.data = torch.max(torch.min(delta, 1 - X), 0 - X)
            delta.grad.zero_()
        all_loss = F.cross_entropy(model(X + delta), y, reduction="none").detach()
        max_delta[all_loss >= max_loss] = delta.detach()[all_loss >= max_loss]
        max_loss = torch.max(max_loss, all_loss)
    return max_delta
