"""State carried across steps and epochs: Free-AT's replayed perturbation, FGSM-PGI's per-sample
priors, ELLE-A's adaptive lambda, GAT's alternating guidance and late lambda boost."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cobench.api import Batch
from cobench.attacks import clamp_delta, input_gradient
from cobench.errors import ConfigError
from cobench.methods.elle import ELLEA, AdaptiveLambda
from cobench.methods.fgsm_pgi import FGSMPGI, smoothed_cross_entropy
from cobench.methods.free import FreeAT
from cobench.methods.gat import GAT

from ._util import EPS, Capture, data, interior, linear_model

# ---------------------------------------------------------------- Free-AT


def test_free_replays_each_minibatch_and_carries_delta_to_the_next(cobench_step_ctx):
    model, (x1, y1) = Capture(linear_model()), data(seed=1)
    x2, y2 = data(seed=2)
    ctx = cobench_step_ctx(model, EPS)  # lr 0: the model is fixed, so gradients can be recomputed
    method = FreeAT(replays=4)
    method.setup(ctx.setup)
    method.train_step(Batch(x1, y1, torch.arange(16)), ctx)
    assert ctx.updates_this_step == 4 and len(ctx.losses) == 4 and len(model.inputs) == 4
    # replay k+1 sees delta_k + eps*sign(grad at x + delta_k), projected; delta_0 = 0
    delta = torch.zeros_like(x1)
    for k in range(4):
        assert torch.allclose(model.inputs[k], x1 + delta, atol=1e-6)
        grad, _ = input_gradient(model.model, x1, y1, delta)
        delta = clamp_delta(x1, (delta + EPS * grad.sign()).clamp(-EPS, EPS))
    assert torch.allclose(method.delta, delta, atol=1e-6)
    assert method.delta.abs().max() > 0 and method.delta.abs().max() <= EPS + 1e-7
    # the next minibatch starts from the carried perturbation (clamped to its own image range)
    method.train_step(Batch(x2[:10], y2[:10], torch.arange(10)), ctx)
    assert torch.allclose(model.inputs[4], x2[:10] + clamp_delta(x2[:10], delta[:10]), atol=1e-6)
    assert len(method.delta) == 16  # the rows of the short batch are updated, the others kept
    assert torch.equal(method.delta[10:], delta[10:])


def reference_train_free(model, batches, epsilon, replays, batch_size, lr):
    """The training loop of locuslab/fast_adversarial CIFAR10/train_free.py (fp32, no amp, a fixed LR)."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    criterion = torch.nn.CrossEntropyLoss()
    lower_limit, upper_limit = 0.0, 1.0
    delta = torch.zeros(batch_size, *batches[0][0].shape[1:])
    delta.requires_grad = True
    for X, y in batches:
        for _ in range(replays):
            output = model(X + delta[: X.size(0)])
            loss = criterion(output, y)
            opt.zero_grad()
            loss.backward()
            grad = delta.grad.detach()
            delta.data = torch.clamp(delta + epsilon * torch.sign(grad), -epsilon, epsilon)
            delta.data[: X.size(0)] = torch.max(torch.min(delta[: X.size(0)], upper_limit - X), lower_limit - X)
            opt.step()
            delta.grad.zero_()
    return delta.detach()


def test_free_matches_the_reference_train_free_loop():
    from cobench.api import StepContext
    from cobench.testing import RecordingStep

    ours, ref = linear_model(seed=3), linear_model(seed=3)
    batches = []
    for seed, n in ((1, 16), (2, 16), (3, 10)):  # a short last batch, as the last of an epoch
        x, y = data(seed=seed, saturate=False)
        batches.append((x[:n].clamp(2 * EPS, 1 - 2 * EPS), y[:n]))  # interior: no box clamp applies
    ref_delta = reference_train_free(ref, batches, EPS, replays=3, batch_size=16, lr=0.05)

    opt = torch.optim.SGD(ours.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)

    def update(loss, logits, y):
        opt.zero_grad()
        loss.backward()
        opt.step()

    ctx = StepContext(ours, RecordingStep(ours, EPS).setup, update)
    method = FreeAT(replays=3)
    method.setup(ctx.setup)
    for x, y in batches:
        method.train_step(Batch(x, y, torch.arange(len(x))), ctx)
    for p, q in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)
    torch.testing.assert_close(method.delta, ref_delta, rtol=0, atol=1e-6)


def test_free_rejects_zero_replays_and_setup_forgets_the_perturbation(cobench_step_ctx):
    with pytest.raises(ConfigError):
        FreeAT(replays=0)
    model, (x, y) = linear_model(), data()
    ctx = cobench_step_ctx(model, EPS)
    method = FreeAT(replays=2)
    method.setup(ctx.setup)
    method.train_step(Batch(x, y, torch.arange(16)), ctx)
    method.setup(ctx.setup)
    assert method.delta is None


# ---------------------------------------------------------------- FGSM-PGI


def test_smoothed_cross_entropy_by_hand():
    logits = torch.tensor([[2.0, 0.0, 0.0]])
    y = torch.tensor([0])
    logp = F.log_softmax(logits, 1)[0]
    hand = -(0.6 * logp[0] + 0.2 * logp[1] + 0.2 * logp[2])
    assert math.isclose(smoothed_cross_entropy(logits, y, 0.6).item(), hand.item(), rel_tol=1e-6)
    assert math.isclose(smoothed_cross_entropy(logits, y, 1.0).item(), F.cross_entropy(logits, y).item(), rel_tol=1e-6)


def test_fgsm_pgi_starts_from_and_updates_each_samples_prior(cobench_step_ctx):
    model, (x, y) = Capture(linear_model()), data(saturate=False)
    ctx = cobench_step_ctx(model, EPS, n_train=40)
    method = FGSMPGI()
    method.setup(ctx.setup)
    assert method.prior.shape == (40, 1, 8, 8)
    assert torch.allclose(method.prior.abs(), torch.full_like(method.prior, EPS))  # random corners
    assert (method.momentum == 0).all()
    idx = torch.arange(10, 26)  # the batch's positions in the training set
    prior0 = method.prior.clone()

    def step():
        model.inputs.clear()
        method.train_step(Batch(x, y, idx), ctx)

    step()
    start = clamp_delta(x, prior0[idx])
    assert torch.allclose(model.inputs[0], x + start, atol=1e-7)  # the attack starts at the prior
    leaf = start.clone().requires_grad_(True)
    g = torch.autograd.grad(smoothed_cross_entropy(model.model(x + leaf), y, 0.6), leaf)[0]
    m1 = g / g.flatten(1).abs().sum(1).view(-1, 1, 1, 1)
    assert torch.allclose(method.momentum[idx], m1, atol=1e-6)
    delta = clamp_delta(x, (start + EPS * g.sign()).clamp(-EPS, EPS))
    assert torch.allclose(model.inputs[1], x + delta, atol=1e-6)  # training input
    assert torch.allclose(method.prior[idx], clamp_delta(x, (start + EPS * m1.sign()).clamp(-EPS, EPS)), atol=1e-6)
    rest = torch.ones(40, dtype=torch.bool)
    rest[idx] = False
    assert torch.equal(method.prior[rest], prior0[rest]) and (method.momentum[rest] == 0).all()
    # training loss: smoothed CE at x + delta + lam * MSE between the two sets of logits
    expected = smoothed_cross_entropy(model.model(x + delta), y, 0.6) + 10 * F.mse_loss(
        model.model(x + delta), model.model(x + start)
    )
    assert math.isclose(ctx.losses[0], expected.item(), rel_tol=1e-5)
    # the next visit (next epoch) starts from the stored prior; momentum accumulates with decay 0.3
    prior1 = method.prior[idx].clone()
    ctx.epoch = 1
    step()
    assert torch.allclose(model.inputs[0], x + clamp_delta(x, prior1), atol=1e-7)
    leaf = clamp_delta(x, prior1).requires_grad_(True)
    g2 = torch.autograd.grad(smoothed_cross_entropy(model.model(x + leaf), y, 0.6), leaf)[0]
    assert torch.allclose(method.momentum[idx], g2 / g2.flatten(1).abs().sum(1).view(-1, 1, 1, 1) + 0.3 * m1, atol=1e-6)


def test_fgsm_pgi_resets_priors_every_reset_every_epochs(cobench_step_ctx):
    model, (x, y) = linear_model(), data()
    ctx = cobench_step_ctx(model, EPS, n_train=16)
    method = FGSMPGI(reset_every=2)
    method.setup(ctx.setup)
    batch = Batch(x, y, torch.arange(16))
    method.train_step(batch, ctx)
    ctx.epoch = 1
    method.train_step(batch, ctx)
    trained = method.prior.clone()
    ctx.epoch = 2  # a reset epoch: fresh random corners, zero momentum, before this epoch's step
    method.train_step(batch, ctx)
    assert not torch.equal(method.prior, trained)
    with pytest.raises(ConfigError):
        FGSMPGI(reset_every=0)


# ---------------------------------------------------------------- ELLE-A


def test_adaptive_lambda_switches_on_at_outliers_and_decays_otherwise():
    s = AdaptiveLambda(lam_max=4000.0, decay=0.99, sensitivity=2.0)
    assert s.lam == 0.0
    for e in (1.0, 1.0, 100.0):  # too few earlier values to judge an outlier
        s.observe(e)
        assert s.lam == 0.0
    s2 = AdaptiveLambda(4000.0, 0.99, 2.0)
    for e in (1.0, 1.1, 0.9):
        s2.observe(e)
    s2.observe(5.0)  # > mean 1.0 + 2 * std 0.0816
    assert s2.lam == 4000.0
    s2.observe(1.0)
    assert math.isclose(s2.lam, 3960.0)
    s2.observe(1.0)
    assert math.isclose(s2.lam, 4000.0 * 0.99**2)


def test_adaptive_lambda_statistics_match_numpy():
    rng = np.random.default_rng(0)
    values = rng.gamma(2.0, 1.0, size=50)
    s = AdaptiveLambda(1.0, 0.5, 2.0)
    lam = 0.0
    for i, v in enumerate(values):
        if i > 2 and v > values[:i].mean() + 2 * values[:i].std():
            lam = 1.0
        else:
            lam *= 0.5
        assert math.isclose(s.observe(float(v)), lam)
    assert math.isclose(s.mean, values.mean()) and math.isclose(s.std, values.std())


def test_elle_a_starts_with_lambda_zero_and_setup_resets_it(cobench_step_ctx):
    model, (x, y) = linear_model(), data()
    ctx = cobench_step_ctx(model, EPS)
    method = ELLEA()
    method.setup(ctx.setup)
    method.train_step(Batch(x, y, torch.arange(16)), ctx)
    assert method.schedule.lam == 0.0 and method.schedule.count == 1
    method.schedule.lam = 123.0
    method.setup(ctx.setup)
    assert method.schedule.lam == 0.0 and method.schedule.count == 0


# ---------------------------------------------------------------- GAT


def test_gat_boosts_lambda_for_the_last_fourteen_percent_of_epochs(cobench_step_ctx):
    ctx = cobench_step_ctx(linear_model(), EPS)
    ctx.setup.epochs = 100
    method = GAT()
    method.setup(ctx.setup)
    assert method.current_lam(85) == 10.0 and method.current_lam(86) == 40.0
    assert GAT(boost=1.0).current_lam(99) == 10.0


def test_gat_starts_from_bernoulli_corners_of_half_eps(cobench_step_ctx):
    model, (x, y) = Capture(linear_model()), data(saturate=False)
    ctx = cobench_step_ctx(model, EPS)
    method = GAT()
    method.setup(ctx.setup)
    method.train_step(Batch(x, y, torch.arange(16)), ctx)
    start = model.inputs[1] - x  # clean probabilities first, then the attack's start
    m = interior(x)
    assert torch.allclose(start[m].abs(), torch.full_like(start[m], EPS / 2), atol=1e-7)
    assert 0.3 < (start[m] > 0).float().mean() < 0.7
