"""Perturbation rules of the single-step methods: RS-FGSM, ZeroGrad, MultiGrad, Kim et al."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cobench.api import Batch
from cobench.attacks import clamp_delta, input_gradient
from cobench.errors import ConfigError
from cobench.methods.kim import KimCheckpoints, first_misclassified
from cobench.methods.rs_fgsm import RSFGSM
from cobench.methods.zerograd import MultiGrad, ZeroGrad, consensus, row_quantile, zero_small

from ._util import EPS, Capture, Draws, data, interior, linear_model


def batch(x, y):
    return Batch(x, y, torch.arange(len(x)))


def assert_valid(x, delta, radius=EPS):
    assert delta.abs().max() <= radius + 1e-6
    assert (x + delta).min() >= 0 and (x + delta).max() <= 1


def test_rs_fgsm_steps_1_25_eps_from_a_uniform_start_and_projects(cobench_step_ctx):
    model, (x, y) = Capture(linear_model()), data()
    ctx = cobench_step_ctx(model, EPS, seed=3)
    RSFGSM().train_step(batch(x, y), ctx)
    init = clamp_delta(x, Draws(3).uniform(x, -EPS, EPS))
    grad, _ = input_gradient(model.model, x, y, init)
    expected = clamp_delta(x, (init + 1.25 * EPS * grad.sign()).clamp(-EPS, EPS))
    delta = model.inputs[-1] - x
    assert torch.allclose(delta, expected, atol=1e-6)
    assert_valid(x, delta)
    # projection is active: interior coordinates whose step overshoots end exactly on the boundary
    m = interior(x) & ((init + 1.25 * EPS * grad.sign()).abs() > EPS)
    assert m.any() and torch.allclose(delta[m].abs(), torch.full_like(delta[m], EPS), atol=1e-6)
    assert len(ctx.losses) == 1


def test_zero_small_zeroes_the_q_quantile_by_hand():
    g = torch.stack([torch.arange(1.0, 101.0), -torch.arange(100.0, 0.0, -1.0)]).view(2, 1, 10, 10)
    out = zero_small(g, 0.35)
    # quantile of 1..100 at 0.35 (linear interpolation) is 35.65: |g| in 1..35 are zeroed in each row
    for row in out.view(2, -1):
        assert (row == 0).sum() == 35
        assert row.abs()[row != 0].min() == 36
    assert torch.equal(out.view(2, -1)[0][35:], g.view(2, -1)[0][35:])


def test_row_quantile_matches_torch_quantile():
    v = torch.randn(5, 37, generator=torch.Generator().manual_seed(0))
    for q in (0.0, 0.35, 0.5, 0.9, 1.0):
        assert torch.allclose(row_quantile(v, q), torch.quantile(v, q, dim=1), atol=1e-6)


def test_zerograd_moves_only_large_gradient_coordinates(cobench_step_ctx):
    model, (x, y) = Capture(linear_model()), data(saturate=False)
    ctx = cobench_step_ctx(model, EPS, seed=5)
    ZeroGrad().train_step(batch(x, y), ctx)
    init = clamp_delta(x, Draws(5).uniform(x, -EPS, EPS))
    grad, _ = input_gradient(model.model, x, y, init)
    kept = zero_small(grad, 0.35) != 0
    delta = model.inputs[-1] - x
    assert_valid(x, delta)
    # zeroed coordinates keep their random start, the others take a 2*eps step, clipped at +-eps
    assert torch.allclose(delta[~kept], init[~kept], atol=1e-7)
    m = kept & interior(x)
    assert torch.allclose(delta[m], EPS * grad[m].sign(), atol=1e-6)
    assert abs((~kept).float().mean().item() - 0.35) < 0.02


def test_consensus_keeps_only_unanimous_signs():
    g1 = torch.tensor([1.0, 1.0, 1.0, -2.0])
    g2 = torch.tensor([3.0, -1.0, 0.0, -1.0])
    g3 = torch.tensor([0.5, 1.0, 2.0, -0.1])
    assert consensus([g1, g2, g3], 3).tolist() == [3.0, 0.0, 0.0, -3.0]
    assert consensus([g1, g2, g3], 2).tolist() == [3.0, 1.0, 2.0, -3.0]


def test_multigrad_steps_eps_where_three_random_gradients_agree_and_zero_elsewhere(cobench_step_ctx):
    model = Capture(nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 3)))
    x, y = data(saturate=False)
    ctx = cobench_step_ctx(model, EPS, seed=7)
    MultiGrad().train_step(batch(x, y), ctx)
    draws = Draws(7)
    grads = [input_gradient(model.model, x, y, clamp_delta(x, draws.uniform(x, -EPS, EPS)))[0] for _ in range(3)]
    signs = torch.stack([g.sign() for g in grads])
    agree = (signs == signs[0]).all(0) & (signs[0] != 0)
    delta = model.inputs[-1] - x
    expected = clamp_delta(x, EPS * signs[0] * agree)
    assert torch.allclose(delta, expected, atol=1e-6)
    assert (delta[~agree] == 0).all()
    m = agree & interior(x)
    assert m.any() and torch.allclose(delta[m], EPS * signs[0][m], atol=1e-6)
    assert agree.any() and (~agree).any()
    assert len(model.inputs) == 4  # three random points, then the training forward


def test_multigrad_and_zerograd_reject_bad_settings():
    with pytest.raises(ConfigError):
        ZeroGrad(q=1.5)
    with pytest.raises(ConfigError):
        MultiGrad(samples=3, threshold=4)


class MeanThreshold(nn.Module):
    """Class 1 iff the mean pixel exceeds 0.5 (logits +-20*(mean - 0.5)); records train/eval mode."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(20.0))
        self.modes: list[bool] = []
        self.inputs: list[torch.Tensor] = []

    def forward(self, x):
        self.modes.append(self.training)
        self.inputs.append(x.detach().clone())
        s = self.scale * (x.flatten(1).mean(1) - 0.5)
        return torch.stack([-s, s], 1)


def test_first_misclassified_picks_the_smallest_fooling_checkpoint():
    model = MeanThreshold()
    x = torch.full((3, 1, 2, 2), 0.4)
    y = torch.zeros(3, dtype=torch.long)  # all correctly classified at x (mean 0.4 < 0.5)
    # full deltas of mean +0.2, +0.4 and +0.05: checkpoints at 1/3, 2/3 of the way
    delta = torch.tensor([0.2, 0.4, 0.05]).view(3, 1, 1, 1).expand(3, 1, 2, 2).contiguous()
    scale = first_misclassified(model, x, y, delta, 3, torch.ones(3, dtype=torch.bool))
    # sample 0: 0.4+0.2/3 < 0.5, 0.4+0.4/3 > 0.5 -> 2/3; sample 1: 0.4+0.4/3 > 0.5 -> 1/3; sample 2: never -> 1
    assert torch.allclose(scale, torch.tensor([2 / 3, 1 / 3, 1.0]))
    skip = first_misclassified(model, x, y, delta, 3, torch.tensor([False, True, False]))
    assert torch.allclose(skip, torch.tensor([1.0, 1 / 3, 1.0]))


def test_kim_trains_on_clean_inputs_for_samples_wrong_at_the_start_and_checks_in_eval_mode(cobench_step_ctx):
    model = MeanThreshold()
    x = torch.cat([torch.full((4, 1, 8, 8), 0.3), torch.full((4, 1, 8, 8), 0.7)])
    y = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1])  # samples 4, 5 are wrong from the start
    ctx = cobench_step_ctx(model, EPS, n_train=8, seed=1)
    model.train()
    KimCheckpoints().train_step(batch(x, y), ctx)
    # forwards: attack and checkpoint checks (eval, as torchattacks 2.12 and the reference trainer),
    # training forward (train); mode restored
    assert model.modes[-1] is True and model.training
    assert all(m is False for m in model.modes[:-1]) and len(model.modes) >= 3
    used = model.inputs[-1] - x
    init = clamp_delta(x, Draws(1).uniform(x, -EPS, EPS))
    x_in = x + init
    x_in.requires_grad_(True)
    logits = model(x_in)
    grad = torch.autograd.grad(torch.nn.functional.cross_entropy(logits, y, reduction="sum"), x_in)[0]
    full = clamp_delta(x, (init + 1.25 * EPS * grad.sign()).clamp(-EPS, EPS))
    wrong = logits.argmax(1) != y
    assert wrong.tolist() == [False] * 4 + [True, True] + [False] * 2
    # samples wrong at the start train on clean inputs; the others are never fooled inside the
    # ball (their mean stays on the right side of 0.5), so they get the full perturbation
    assert (used[4:6] == 0).all()
    assert torch.allclose(used[:4], full[:4], atol=1e-6) and torch.allclose(used[6:], full[6:], atol=1e-6)
    assert full[:4].abs().max() > 0


def test_kim_chosen_perturbation_is_a_checkpoint(cobench_step_ctx):
    torch.manual_seed(0)
    model = Capture(nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3)))
    x, y = data(n=32)
    ctx = cobench_step_ctx(model, 32 / 255, seed=2)
    KimCheckpoints().train_step(batch(x, y), ctx)
    eps = 32 / 255
    init = clamp_delta(x, Draws(2).uniform(x, -eps, eps))
    grad, _ = input_gradient(model.model, x, y, init)
    full = clamp_delta(x, (init + 1.25 * eps * grad.sign()).clamp(-eps, eps))
    used = model.inputs[-1] - x
    with torch.no_grad():
        start_wrong = model.model(x + init).argmax(1) != y
        fooled = [model.model(x + (k / 3) * full).argmax(1) != y for k in range(4)]
    seen = set()
    for i, (d, f) in enumerate(zip(used, full)):
        ks = [k for k in range(4) if torch.allclose(d, (k / 3) * f, atol=1e-6)]
        assert ks, "training perturbation is not one of the checkpoints 0, 1/3, 2/3, 1"
        k = 0 if start_wrong[i] else ks[-1]
        if start_wrong[i]:
            assert (d == 0).all()
        elif k < 3:  # the first fooling checkpoint, none before it
            assert fooled[k][i] and not any(fooled[j][i] for j in range(1, k))
        else:
            assert not any(fooled[j][i] for j in (1, 2))
        seen.add(k)
    assert_valid(x, used, eps)
    assert len(seen) >= 2  # the data exercise more than one branch
