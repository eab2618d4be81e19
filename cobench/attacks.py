"""L-inf attack primitives shared by training methods and evaluators.

They never change the model's train/eval mode: training methods craft perturbations with
BatchNorm in train mode (as the fast-AT reference code does), evaluators call them on a
model in eval mode. ``x + delta`` is always kept inside [lower, upper].
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def clamp_delta(x: Tensor, delta: Tensor, lower: float = 0.0, upper: float = 1.0) -> Tensor:
    return torch.max(torch.min(delta, upper - x), lower - x)


def input_gradient(
    model: nn.Module, x: Tensor, y: Tensor, delta: Tensor, create_graph: bool = False
) -> tuple[Tensor, Tensor]:
    """Gradient of the mean cross-entropy w.r.t. ``delta`` at ``x + delta``; returns (grad, loss)."""
    if not delta.requires_grad:
        delta = delta.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x + delta), y)
    (grad,) = torch.autograd.grad(loss, delta, create_graph=create_graph)
    return grad, loss


def sample_gradients(
    model: nn.Module, x: Tensor, y: Tensor, *, create_graph: bool = False
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-sample input gradients: row i is the gradient of sample i's own cross-entropy at x_i.

    Returns ``(grad, losses, logits)``. The gradient is that of the *summed* loss, so it does not
    shrink with the batch size (unlike :func:`input_gradient`). With ``create_graph`` the gradient
    stays differentiable w.r.t. the model's parameters (double backpropagation), which gradient
    regularizers (GradAlign, CURE, LLR) need.
    """
    x = x.detach().requires_grad_(True)
    logits = model(x)
    losses = F.cross_entropy(logits, y, reduction="none")
    (grad,) = torch.autograd.grad(losses.sum(), x, create_graph=create_graph)
    return grad, losses, logits


def sign_step(
    x: Tensor,
    delta: Tensor,
    grad: Tensor,
    alpha: float,
    eps: float | None = None,
    lower: float = 0.0,
    upper: float = 1.0,
) -> Tensor:
    """``delta + alpha * sign(grad)``, clipped to the eps-ball (unless ``eps`` is None) and to the image range.

    Coordinates where ``grad`` is exactly zero do not move (sign(0) = 0), which ZeroGrad and
    MultiGrad rely on.
    """
    delta = delta.detach() + alpha * grad.detach().sign()
    if eps is not None:
        delta = delta.clamp(-eps, eps)
    return clamp_delta(x, delta, lower, upper)


@contextlib.contextmanager
def model_mode(model: nn.Module, training: bool) -> Iterator[None]:
    """Temporarily put ``model`` in train or eval mode (restored afterwards).

    Some methods craft or check perturbations with BatchNorm in eval mode (Kim et al. 2021,
    GAT) while the surrounding training step runs in train mode.
    """
    was = model.training
    model.train(training)
    try:
        yield
    finally:
        model.train(was)


def full_precision(like: Tensor) -> contextlib.AbstractContextManager:
    """fp32 inside a bf16 training step (autocast off on ``like``'s device); nothing otherwise.

    For regularisers that are differences of nearly equal losses, which bf16 logits round away
    (ELLE's linearity error, LLR's; ``benchmarks/bf16_regularizers.py``): their large lambda would
    multiply the rounding noise."""
    return torch.autocast(device_type=like.device.type, enabled=False)


def uniform_like(x: Tensor, low: float, high: float, generator: torch.Generator | None = None) -> Tensor:
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return u * (high - low) + low


def fgsm(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    *,
    alpha: float | None = None,
    init: Tensor | None = None,
    project: bool = True,
    lower: float = 0.0,
    upper: float = 1.0,
) -> Tensor:
    """One signed-gradient step from ``init`` (zero by default); returns the perturbation.

    With ``project`` the result is clipped to the eps-ball; it is always clamped so that
    ``x + delta`` is a valid image.
    """
    alpha = eps if alpha is None else alpha
    delta = torch.zeros_like(x) if init is None else clamp_delta(x, init, lower, upper)
    grad, _ = input_gradient(model, x, y, delta)
    delta = delta.detach() + alpha * grad.sign()
    if project:
        delta = delta.clamp(-eps, eps)
    return clamp_delta(x, delta, lower, upper).detach()


def pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    *,
    alpha: float,
    steps: int,
    restarts: int = 1,
    random_init: bool = True,
    generator: torch.Generator | None = None,
    lower: float = 0.0,
    upper: float = 1.0,
) -> Tensor:
    """L-inf PGD with restarts (Madry et al. 2018); returns the worst perturbation found.

    Across restarts each sample keeps the perturbation of the first restart that fools the
    model, else the one with the highest loss. This is not the references' rule: co_features'
    ``RestartPGD`` (attacks/__init__.py) and Wong et al.'s ``attack_pgd`` (CIFAR10/utils.py) keep
    the highest-loss restart even when a lower-loss one fooled the model, and ``attack_pgd`` also
    stops updating samples once misclassified. Counting any fooling restart, ours reports a
    robust accuracy at most theirs for the same perturbations.
    """
    best_delta = torch.zeros_like(x)
    best_loss = torch.full((len(x),), -float("inf"), device=x.device)
    fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for _ in range(max(1, restarts)):
        delta = uniform_like(x, -eps, eps, generator) if random_init else torch.zeros_like(x)
        delta = clamp_delta(x, delta, lower, upper)
        for _ in range(steps):
            grad, _ = input_gradient(model, x, y, delta)
            delta = (delta.detach() + alpha * grad.sign()).clamp(-eps, eps)
            delta = clamp_delta(x, delta, lower, upper)
        if restarts <= 1:  # nothing to choose between: skip the extra forward pass
            return delta.detach()
        with torch.no_grad():
            logits = model(x + delta)
            loss = F.cross_entropy(logits, y, reduction="none")
            now_fooled = logits.argmax(1) != y
            take = (~fooled & now_fooled) | (~fooled & ~now_fooled & (loss > best_loss))
            best_delta[take] = delta[take]
            best_loss = torch.where(take, loss, best_loss)
            fooled |= now_fooled
    return best_delta.detach()


def pgd_until_fooled(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    *,
    alpha: float,
    steps: int,
    restarts: int = 1,
    generator: torch.Generator | None = None,
    lower: float = 0.0,
    upper: float = 1.0,
    prune: bool = True,
) -> Tensor:
    """L-inf PGD for evaluation (model in eval mode): a sample stops once it is fooled.

    Follows ``attack_pgd`` in locuslab/fast_adversarial, CIFAR10/utils.py (Wong, Rice & Kolter
    2020): each step first classifies the current ``x + delta`` and moves only the samples still
    classified correctly, so a fooled sample keeps the perturbation that fooled it. Across
    restarts a sample keeps the perturbation of the first restart that fools it, else the one
    with the highest loss (the reference keeps the highest loss even over a fooling one).

    ``prune=True`` sends only the still-correct samples through the model: a fooled sample
    is frozen at once and leaves the batch at the next compaction (:func:`compact_after`: the
    host syncs only there, not every step), and later restarts attack only the samples no
    earlier restart fooled.
    ``prune=False`` is the naive cost (every sample forward and backward at every step of
    every restart, updates masked as in the reference). Both draw the same random starts
    (every restart draws noise for the whole batch) and take the gradient of the *summed*
    loss, whose per-sample rows do not depend on which other samples share the batch, so
    their per-sample decisions agree (up to floating-point rounding, which can differ
    between batch sizes); only the cost differs. Returns the chosen perturbations.
    """
    n = len(x)
    rows = (-1,) + (1,) * (x.dim() - 1)  # a per-sample mask broadcast over an image
    best_delta = torch.zeros_like(x)
    best_loss = torch.full((n,), -float("inf"), device=x.device, dtype=x.dtype)
    fooled = torch.zeros(n, dtype=torch.bool, device=x.device)
    for _ in range(max(1, restarts)):
        noise = uniform_like(x, -eps, eps, generator)  # drawn for all: later batches see the same stream
        attacked = (~fooled).nonzero().squeeze(1) if prune else torch.arange(n, device=x.device)
        if len(attacked) == 0:
            continue
        delta = clamp_delta(x, noise, lower, upper)
        now_fooled = torch.zeros(n, dtype=torch.bool, device=x.device)
        loss = torch.full((n,), -float("inf"), device=x.device, dtype=x.dtype)
        active = attacked  # the batch: samples still correct at the last compaction
        for step in range(1, steps + 1):
            d = delta[active].requires_grad_(True)
            logits = model(x[active] + d)
            correct = logits.argmax(1) == y[active]
            if prune:  # a sample fooled at an earlier step stays fooled, with the perturbation that fooled it
                alive = ~now_fooled[active]
                now_fooled[active] = ~alive | ~correct
                move = alive & correct
            else:
                move = correct
            per_sample = F.cross_entropy(logits, y[active], reduction="none")
            (grad,) = torch.autograd.grad(per_sample.sum(), d)
            moved = (d.detach() + alpha * grad.sign()).clamp(-eps, eps)
            moved = clamp_delta(x[active], moved, lower, upper)
            delta[active] = torch.where(move.view(rows), moved, d.detach())
            if prune and compact_after(step):  # the one host sync: fooled samples leave the batch
                active = active[~now_fooled[active]]
                if len(active) == 0:
                    break
        if len(active):
            with torch.no_grad():
                logits = model(x[active] + delta[active])
                final_fooled = logits.argmax(1) != y[active]
                final_loss = F.cross_entropy(logits, y[active], reduction="none")
                if prune:
                    alive = ~now_fooled[active]
                    now_fooled[active] = ~alive | final_fooled
                    loss[active] = torch.where(alive, final_loss, loss[active])
                else:
                    now_fooled[active] = final_fooled
                    loss[active] = final_loss
        in_restart = torch.zeros(n, dtype=torch.bool, device=x.device)
        in_restart[attacked] = True
        take = in_restart & ~fooled & (now_fooled | (loss > best_loss))
        best_delta = torch.where(take.view(rows), delta, best_delta)
        best_loss = torch.where(take, loss, best_loss)
        fooled |= in_restart & now_fooled
    return best_delta.detach()


#: pruned PGD drops its fooled samples from the batch after steps 1, 2 and 4, then every this many
PRUNE_EVERY = 8


def compact_after(step: int) -> bool:
    """Whether pruned PGD compacts its batch after ``step`` (1-based). Finding the fooled samples
    makes the host wait for the device, so it is not done every step: early, when a collapsed
    model lets most samples fall, then every ``PRUNE_EVERY`` steps. Between compactions a fooled
    sample rides along frozen (masked, never moved), so the decisions are those of compacting
    every step; only the cost differs."""
    return step in (1, 2, 4) or step % PRUNE_EVERY == 0


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1024) -> float:
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += (model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum().item()
    return correct / max(1, len(x))
