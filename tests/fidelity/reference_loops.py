"""Training loops written the way the reference repositories write them, for step-parity tests.

Each function follows one repository's training script line for line in what decides the
parameters (optimiser and scheduler construction, attack arithmetic, order of the steps),
with three changes that only make the runs comparable:

* batches come from a ``DataLoader`` over CPU tensors whose order is ``torch.randperm(n,
  generator=g)`` per epoch, and every random draw of the attack uses the same generator ``g``
  (the repositories use the global RNG), so both sides see the same batches and noise;
* noise is drawn for the whole tensor at once; Wong et al. and N-FGSM draw it per channel in
  normalised units (``delta[:, j].uniform_(-eps_j, eps_j)``), which is the same distribution;
* no apex/amp, no ``.cuda()``, no logging or evaluation.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def batches(x, y, batch_size, g):
    """One epoch of a DataLoader over CPU tensors, shuffled by ``g``."""
    perm = torch.randperm(len(x), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, sampler=perm.tolist())


class Normalizer(nn.Module):
    """gortizji/co_features train/utils.py."""

    def __init__(self, module, mean, std):
        super().__init__()
        self.mean, self.std, self.module = mean, std, module

    def forward(self, x):
        return self.module((x - self.mean) / self.std)


def cyclic(opt, lr_max, lr_steps, peak=0.5):
    """``CyclicLR(opt, base_lr=0, max_lr, step_size_up=lr_steps / 2, step_size_down=lr_steps / 2)``."""
    return torch.optim.lr_scheduler.CyclicLR(
        opt, base_lr=0.0, max_lr=lr_max, step_size_up=lr_steps * peak, step_size_down=lr_steps * (1 - peak)
    )


# --------------------------------------------------------------------------- gortizji/co_features
def clip_box(delta, X):
    delta.data = torch.clamp(delta, -X, 1.0 - X)
    return delta.data


class FGSM:
    """attacks/__init__.py FGSM (and RSFGSM / NFGSM through init_delta)."""

    def __init__(self, epsilon, alpha, clip_delta=True, clip_box=True, unif=0.0, g=None):
        self.epsilon, self.alpha, self.clip_delta, self.clip_box, self.unif, self.g = (
            epsilon,
            alpha,
            clip_delta,
            clip_box,
            unif,
            g,
        )

    def attack(self, model, X, y):
        delta = self.init_delta(X)
        output = model(X + delta)
        loss = F.cross_entropy(output, y)
        loss.backward()
        grad = delta.grad.detach()
        delta.data = delta + self.alpha * torch.sign(grad)
        if self.clip_delta:
            delta.data = torch.clamp(delta, -self.epsilon, self.epsilon)
        if self.clip_box:
            delta.data = clip_box(delta, X)
        output = model(X + delta)
        loss = F.cross_entropy(output, y)
        return loss, delta, output

    def init_delta(self, X):
        delta = torch.zeros_like(X)
        if self.unif > 0:  # RSFGSM / NFGSM
            delta.uniform_(-self.unif * self.epsilon, self.unif * self.epsilon, generator=self.g)
            if self.clip_box:
                delta = clip_box(delta, X)
        delta.requires_grad = True
        return delta


class LinfPGD:
    """attacks/__init__.py LinfPGD."""

    def __init__(self, epsilon, alpha, iterations, clip_box=True, g=None):
        self.epsilon, self.alpha, self.iterations, self.clip_box, self.g = epsilon, alpha, iterations, clip_box, g

    def attack(self, model, X, y):
        delta = torch.zeros_like(X)
        delta.uniform_(-self.epsilon, self.epsilon, generator=self.g)
        delta = clip_box(delta, X)
        delta.requires_grad = True
        for _ in range(self.iterations):
            output = model(X + delta)
            loss = F.cross_entropy(output, y)
            loss.backward()
            grad = delta.grad.detach()
            delta.data = torch.clamp(delta + self.alpha * torch.sign(grad), -self.epsilon, self.epsilon)
            if self.clip_box:
                delta.data = clip_box(delta, X)
            delta.grad.zero_()
        output = model(X + delta)
        loss = F.cross_entropy(output, y)
        return loss, delta, output


def co_features(net, x, y, *, method, eps, epochs, batch_size, seed, mean, std, lr_max=0.2):
    """injected_feature_cifar_{fgsm,nfgsm,pgd}_train.py with train/adv_train.py AdvTrainer.train."""
    g = torch.Generator().manual_seed(seed)
    model = Normalizer(net, mean=mean, std=std)
    opt = torch.optim.SGD(model.parameters(), lr=lr_max, momentum=0.9, weight_decay=5e-4)
    steps_per_epoch = -(-len(x) // batch_size)
    scheduler = cyclic(opt, lr_max, epochs * steps_per_epoch)
    attack = {
        "fgsm": lambda: FGSM(eps, eps, clip_delta=True, clip_box=True),
        "n-fgsm": lambda: FGSM(eps, eps, clip_delta=False, clip_box=True, unif=2.0, g=g),
        "pgd": lambda: LinfPGD(eps, 2 / 255, 10, clip_box=True, g=g),
    }[method]()
    for _ in range(epochs):
        model.train()
        for X, yb in batches(x, y, batch_size, g):
            loss, delta, adv_output = attack.attack(model=model, X=X, y=yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            scheduler.step()
    return model


class GradAlign(nn.Module):
    """train/utils.py GradAlign (``torch.zeros(1).cuda()[0]`` without ``.cuda()``; noise drawn from ``g``)."""

    def __init__(self, reg_lambda, epsilon, g=None) -> None:
        super().__init__()
        self.reg_lambda, self.epsilon, self.g = reg_lambda, epsilon, g

    def forward(self, model, loss, delta, X, y):
        reg = torch.zeros(1)[0]
        grad = torch.autograd.grad(loss, delta, create_graph=True)[0]
        grad = grad.detach()
        if self.reg_lambda > 0:
            grad2 = self._get_input_grad(model, X, y)
            grads_nnz_idx = ((grad**2).sum([1, 2, 3]) ** 0.5 != 0) * ((grad2**2).sum([1, 2, 3]) ** 0.5 != 0)
            grad1, grad2 = grad[grads_nnz_idx], grad2[grads_nnz_idx]
            grad1_norms = (grad1**2).sum([1, 2, 3]) ** 0.5  # attacks/utils.py l2_norm_batch
            grad2_norms = (grad2**2).sum([1, 2, 3]) ** 0.5
            grad1_normalized = grad1 / grad1_norms[:, None, None, None]
            grad2_normalized = grad2 / grad2_norms[:, None, None, None]
            cos = torch.sum(grad1_normalized * grad2_normalized, (1, 2, 3))
            reg += self.reg_lambda * (1.0 - cos.mean())
        return reg

    def _get_input_grad(self, model, X, y):
        delta = torch.zeros_like(X)
        delta.uniform_(-self.epsilon, self.epsilon, generator=self.g)
        delta.requires_grad = True
        output = model(X + delta)
        loss = F.cross_entropy(output, y)
        grad = torch.autograd.grad(loss, delta, create_graph=True)[0]
        return grad


def co_features_grad_align(net, x, y, *, method, eps, epochs, batch_size, seed, mean, std, lam=0.2, lr_max=0.2, **_):
    """injected_feature_cifar_gradalign_train.py: ``FGSM(epsilon, alpha=epsilon, clip_delta, clip_box)``,
    ``GradAlignAdvTrainer.regularized_loss`` = loss + GradAlign(model, loss, delta, X, y) with the loss
    FGSM.attack returns (at the FGSM point), then AdvTrainer.train's zero_grad / backward / step /
    scheduler.step. ``reg_lambda: 0.2`` in its config."""
    assert method == "grad-align"
    g = torch.Generator().manual_seed(seed)
    model = Normalizer(net, mean=mean, std=std)
    opt = torch.optim.SGD(model.parameters(), lr=lr_max, momentum=0.9, weight_decay=5e-4)
    steps_per_epoch = -(-len(x) // batch_size)
    scheduler = cyclic(opt, lr_max, epochs * steps_per_epoch)
    attack = FGSM(eps, eps, clip_delta=True, clip_box=True)
    grad_align_loss = GradAlign(lam, eps, g=g)
    for _ in range(epochs):
        model.train()
        for X, yb in batches(x, y, batch_size, g):
            loss, delta, adv_output = attack.attack(model=model, X=X, y=yb)
            reg_loss = loss + grad_align_loss(model, loss, delta, X, yb)
            opt.zero_grad()
            reg_loss.backward()
            opt.step()
            scheduler.step()
    return model


# --------------------------------------------------------------------------- locuslab/fast_adversarial
def fast_at(net, x, y, *, method, eps, epochs, batch_size, seed, mean, std, lr_max=0.2):
    """CIFAR10/train_fgsm.py (``--delta-init zero`` for fgsm, ``random`` for rs-fgsm, alpha 1.25 eps):
    inputs normalised by the loader, eps and alpha divided by std, box limits in normalised units."""
    g = torch.Generator().manual_seed(seed)
    mu, sd = mean.view(3, 1, 1), std.view(3, 1, 1)
    upper_limit, lower_limit = (1 - mu) / sd, (0 - mu) / sd
    clamp = lambda X, lo, hi: torch.max(torch.min(X, hi), lo)  # noqa: E731
    epsilon = eps / sd
    alpha = (1.25 * eps if method == "rs-fgsm" else eps) / sd
    opt = torch.optim.SGD(net.parameters(), lr=lr_max, momentum=0.9, weight_decay=5e-4)
    steps_per_epoch = -(-len(x) // batch_size)
    scheduler = cyclic(opt, lr_max, epochs * steps_per_epoch)
    net.train()
    for _ in range(epochs):
        for X, yb in batches(x, y, batch_size, g):
            X = (X - mu) / sd  # transforms.Normalize
            delta = torch.zeros_like(X)
            if method == "rs-fgsm":
                delta = torch.zeros_like(X).uniform_(-eps, eps, generator=g) / sd
                delta.data = clamp(delta, lower_limit - X, upper_limit - X)
            delta.requires_grad = True
            output = net(X + delta[: X.size(0)])
            loss = F.cross_entropy(output, yb)
            loss.backward()
            grad = delta.grad.detach()
            delta.data = clamp(delta + alpha * torch.sign(grad), -epsilon, epsilon)
            delta.data[: X.size(0)] = clamp(delta[: X.size(0)], lower_limit - X, upper_limit - X)
            delta = delta.detach()
            output = net(X + delta[: X.size(0)])
            loss = nn.CrossEntropyLoss()(output, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            scheduler.step()
    return net


# --------------------------------------------------------------------------- pdejorge/N-FGSM
def n_fgsm(net, x, y, *, method, eps, epochs, batch_size, seed, mean, std, lr_max=0.2, unif=2.0, dataset="CIFAR10"):
    """train.py: noise U[-unif eps, unif eps], step alpha = eps, no clip. ``dataset="SVHN"`` takes
    its SVHN branches: lr_max 0.05 (line 91), CyclicLR up 2/5 and down 3/5 of lr_steps (180-181),
    and eps and alpha ramped by min(iter_count / n_warmup_iterations, 1) over 5 epochs of
    iterations (149-156, 206-211, 250). eps and alpha are kept in pixel units until the noise
    draw and the step, where the reference's per-channel values (already divided by std) are used."""
    assert method == "n-fgsm"
    g = torch.Generator().manual_seed(seed)
    mu, sd = mean.view(3, 1, 1), std.view(3, 1, 1)
    upper_limit, lower_limit = (1 - mu) / sd, (0 - mu) / sd
    clamp = lambda X, lo, hi: torch.max(torch.min(X, hi), lo)  # noqa: E731
    if dataset == "SVHN":
        lr_max = 0.05
    alpha = eps / sd
    train_loader_len = -(-len(x) // batch_size)
    if dataset == "SVHN":
        epsilon_global, alpha_global = eps, alpha
        n_warmup_epochs = 5
        n_warmup_iterations = n_warmup_epochs * train_loader_len
    opt = torch.optim.SGD(net.parameters(), lr=lr_max, momentum=0.9, weight_decay=5e-4)
    lr_steps = epochs * train_loader_len
    if dataset == "SVHN":
        scheduler = torch.optim.lr_scheduler.CyclicLR(
            opt, base_lr=0.0, max_lr=lr_max, step_size_up=lr_steps * 2 / 5, step_size_down=lr_steps * 3 / 5
        )
    else:
        scheduler = cyclic(opt, lr_max, lr_steps)
    iter_count = 0
    net.train()
    for _ in range(epochs):
        for X, yb in batches(x, y, batch_size, g):
            if dataset == "SVHN":
                eps = epsilon_global * min(iter_count / n_warmup_iterations, 1)
                alpha = alpha_global * min(iter_count / n_warmup_iterations, 1)
            X = (X - mu) / sd
            eta = torch.zeros_like(X).uniform_(-unif * eps, unif * eps, generator=g) / sd
            eta = clamp(eta, lower_limit - X, upper_limit - X)
            eta.requires_grad = True
            output = net(X + eta)
            loss = F.cross_entropy(output, yb)
            grad = torch.autograd.grad(loss, eta)[0]
            grad = grad.detach()
            delta = eta + alpha * torch.sign(grad)
            delta = clamp(delta, lower_limit - X, upper_limit - X)
            delta = delta.detach()
            output = net(X + delta)
            loss = F.cross_entropy(output, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            scheduler.step()
            iter_count += 1
    return net


# --------------------------------------------------------------------------- tml-epfl/understanding-fast-adv-training
def grad_align(net, x, y, *, method, eps, epochs, batch_size, seed, lam, lr_max=0.3, fgsm_alpha=1.25, **_):
    """train.py with ``--attack=fgsm --attack_init=zero --grad_align_cos_lambda=lam`` (no normalisation,
    lr from utils.get_lr_schedule set on the optimiser before each step, constant momentum 0.9).
    The script's extra 'epoch 0' (one forward pass, no update) is left out."""
    assert method in ("grad-align", "fgsm")
    g = torch.Generator().manual_seed(seed)
    clamp = lambda X, lo, hi: torch.max(torch.min(X, torch.as_tensor(hi)), torch.as_tensor(lo))  # noqa: E731
    lr_schedule = lambda t: np.interp([t], [0, epochs * 2 // 5, epochs], [0, lr_max, 0])[0]  # noqa: E731
    opt = torch.optim.SGD(net.parameters(), lr=lr_max, momentum=0.9, weight_decay=5e-4)
    net.train()
    for epoch in range(1, epochs + 1):
        loader = batches(x, y, batch_size, g)
        for i, (X, yb) in enumerate(loader):
            lr = lr_schedule(epoch - 1 + (i + 1) / len(loader))
            opt.param_groups[0].update(lr=lr)
            delta = torch.zeros_like(X, requires_grad=True)
            X_adv = clamp(X + delta, 0, 1)
            output = net(X_adv)
            loss = F.cross_entropy(output, yb)
            grad = torch.autograd.grad(loss, delta, create_graph=True)[0]
            grad = grad.detach()
            argmax_delta = eps * torch.sign(grad)
            delta.data = clamp(delta.data + fgsm_alpha * argmax_delta, -eps, eps)
            delta.data = clamp(X + delta.data, 0, 1) - X
            delta = delta.detach()
            output = net(X + delta)
            loss = nn.CrossEntropyLoss()(output, yb)
            reg = torch.zeros(1)[0]
            if lam != 0.0:
                d2 = torch.zeros_like(X).uniform_(-eps, eps, generator=g).requires_grad_(True)  # get_uniform_delta
                loss2 = F.cross_entropy(net(X + d2), yb)
                grad2 = torch.autograd.grad(loss2, d2, create_graph=True)[0]
                grads_nnz_idx = ((grad**2).sum([1, 2, 3]) ** 0.5 != 0) * ((grad2**2).sum([1, 2, 3]) ** 0.5 != 0)
                grad1, grad2 = grad[grads_nnz_idx], grad2[grads_nnz_idx]
                grad1_norms = (grad1**2).sum([1, 2, 3]) ** 0.5  # utils.l2_norm_batch
                grad2_norms = (grad2**2).sum([1, 2, 3]) ** 0.5
                grad1_normalized = grad1 / grad1_norms[:, None, None, None]
                grad2_normalized = grad2 / grad2_norms[:, None, None, None]
                cos = torch.sum(grad1_normalized * grad2_normalized, (1, 2, 3))
                reg += lam * (1.0 - cos.mean())
            loss += reg
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net


# --------------------------------------------------------------------------- LIONS-EPFL/ELLE
def elle(net, x, y, *, method, eps, epochs, batch_size, seed, lam, lr_max=0.2, **_):
    """train.py + core/utils/train.py (``--reg ELLE --attack-iter 1 --attack-step eps --scheduler
    GradAlign``, no normalisation, no clamping): Trainer.loss, then optimizer.step(),
    scheduler.step(), optimizer.step(). The unused noise draw of ``input_noise_rate = 0``
    (``0 * (2 * torch.rand(...) - 1)``) comes from the global RNG so that it does not shift ``g``."""
    assert method == "elle"
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(net.parameters(), lr=lr_max, weight_decay=5e-4, momentum=0.9, nesterov=False)
    lr_steps = epochs * -(-len(x) // batch_size)
    scheduler = torch.optim.lr_scheduler.CyclicLR(
        opt, base_lr=0, max_lr=lr_max, step_size_up=lr_steps / 2, step_size_down=lr_steps / 2
    )
    criterion = nn.CrossEntropyLoss()
    for _ in range(epochs):
        net.train()
        for xb, yb in batches(x, y, batch_size, g):
            bs = xb.shape[0]
            opt.zero_grad()
            x_adv = xb.clone() + 0 * eps * (2 * torch.rand(xb.shape) - 1)
            x_adv.requires_grad = True
            outputs = net(x_adv)
            criterion(outputs, yb).backward(retain_graph=True)
            grads_input = x_adv.grad.clone()
            x_adv = x_adv + eps * torch.sign(grads_input)
            net.zero_grad()
            x_adv = x_adv.detach()
            out2 = net(x_adv)
            loss = criterion(out2, yb)
            x_ab = xb.repeat([2, 1, 1, 1])
            x_ab = x_ab + eps * (2 * torch.rand(x_ab.shape, generator=g) - 1)
            alpha = torch.rand([bs, 1, 1, 1], generator=g)
            x_c = (1 - alpha) * x_ab[:bs] + alpha * x_ab[bs:]
            alpha = alpha.squeeze()
            losses = nn.CrossEntropyLoss(reduction="none")(net(torch.cat((x_ab, x_c), dim=0)), yb.repeat([3]))
            lin_err = nn.MSELoss()(losses[2 * bs :], (1 - alpha) * losses[:bs] + alpha * losses[bs : 2 * bs])
            loss += lam * lin_err
            loss.backward()
            opt.step()
            scheduler.step()
            opt.step()
    return net
