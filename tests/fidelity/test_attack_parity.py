"""Attack steps alone: cobench's training perturbations equal the reference attacks' to 1e-6
(in float64, as every parity test: see conftest.py)."""

from __future__ import annotations

import torch

from cobench.attacks import fgsm, pgd, uniform_like

from . import reference_loops as ref
from .test_step_parity import EPS, REF_MEAN, REF_STD, tiny_data, tiny_net

TOL = 1e-6


def model_and_batch():
    x, y = tiny_data()
    model = ref.Normalizer(tiny_net(), REF_MEAN, REF_STD).train()  # BatchNorm in train mode, as in training
    return model, x[:32], y[:32]


def test_fgsm_matches_co_features_fgsm():
    model, x, y = model_and_batch()
    _, theirs, _ = ref.FGSM(EPS, EPS, clip_delta=True, clip_box=True).attack(model, x, y)
    ours = fgsm(model, x, y, EPS, alpha=EPS)
    assert (ours - theirs.detach()).abs().max() < TOL
    assert ours.abs().max() > 0.9 * EPS


def test_n_fgsm_matches_co_features_nfgsm():
    model, x, y = model_and_batch()
    _, theirs, _ = ref.FGSM(
        EPS, EPS, clip_delta=False, clip_box=True, unif=2.0, g=torch.Generator().manual_seed(5)
    ).attack(model, x, y)
    noise = uniform_like(x, -2 * EPS, 2 * EPS, torch.Generator().manual_seed(5))
    ours = fgsm(model, x, y, EPS, alpha=EPS, init=noise, project=False)
    assert (ours - theirs.detach()).abs().max() < TOL
    assert ours.abs().max() > 2 * EPS  # unprojected, as N-FGSM


def test_pgd_matches_co_features_linf_pgd():
    model, x, y = model_and_batch()
    _, theirs, _ = ref.LinfPGD(EPS, 2 / 255, 10, clip_box=True, g=torch.Generator().manual_seed(5)).attack(model, x, y)
    ours = pgd(model, x, y, EPS, alpha=0.25 * EPS, steps=10, generator=torch.Generator().manual_seed(5))
    assert (ours - theirs.detach()).abs().max() < TOL


def test_rs_fgsm_matches_wongs_step_in_normalised_units():
    _, x, y = model_and_batch()
    net = tiny_net().train()
    mu, sd = REF_MEAN.view(3, 1, 1), REF_STD.view(3, 1, 1)
    X = (x - mu) / sd
    clamp = lambda v, lo, hi: torch.max(torch.min(v, hi), lo)  # noqa: E731
    delta = torch.zeros_like(X).uniform_(-EPS, EPS, generator=torch.Generator().manual_seed(5)) / sd
    delta.data = clamp(delta, (0 - mu) / sd - X, (1 - mu) / sd - X)
    delta.requires_grad = True
    loss = torch.nn.functional.cross_entropy(net(X + delta), y)
    loss.backward()
    delta.data = clamp(delta + 1.25 * EPS / sd * torch.sign(delta.grad), -EPS / sd, EPS / sd)
    delta.data = clamp(delta, (0 - mu) / sd - X, (1 - mu) / sd - X)
    theirs = delta.detach() * sd  # back to pixel units
    noise = uniform_like(x, -EPS, EPS, torch.Generator().manual_seed(5))
    ours = fgsm(ref.Normalizer(net, REF_MEAN, REF_STD), x, y, EPS, alpha=1.25 * EPS, init=noise)
    assert (ours - theirs).abs().max() < TOL
