"""Regularizer values (by hand on a one-pixel model) and their parameter gradients (finite
differences, through double backprop where the method uses it): GradAlign, LLR, CURE, ELLE, GAT."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cobench.api import Batch
from cobench.attacks import clamp_delta, fgsm, input_gradient, sample_gradients
from cobench.methods.cure import CURE, curvature_direction, curvature_regularizer
from cobench.methods.elle import ELLE, linearity_error
from cobench.methods.gat import GAT, probability_gap
from cobench.methods.grad_align import GradAlign, alignment_regularizer, gradient_alignment
from cobench.methods.llr import LLR, find_violation, linearity_violation, llr_regularizer

from ._util import EPS, Capture, Draws, check_param_gradient, data, smooth_model

# ---------------------------------------------------------------- a one-pixel, two-class model
W, B = (1.5, -2.0), (0.3, -0.1)


def pixel_model() -> nn.Module:
    m = nn.Sequential(nn.Flatten(), nn.Linear(1, 2)).double()
    with torch.no_grad():
        m[1].weight.copy_(torch.tensor([[W[0]], [W[1]]], dtype=torch.float64))
        m[1].bias.copy_(torch.tensor(B, dtype=torch.float64))
    return m


def loss_by_hand(x: float, y: int) -> float:
    z = [W[0] * x + B[0], W[1] * x + B[1]]
    return math.log(math.exp(z[0]) + math.exp(z[1])) - z[y]


def grad_by_hand(x: float, y: int) -> float:
    z = [W[0] * x + B[0], W[1] * x + B[1]]
    p1 = math.exp(z[1]) / (math.exp(z[0]) + math.exp(z[1]))
    return (1 - p1) * W[0] + p1 * W[1] - W[y]


XS, YS = [0.2, 0.5, 0.9], [0, 1, 1]


def pixels(values):
    return torch.tensor(values, dtype=torch.float64).view(-1, 1, 1, 1)


def test_per_sample_gradients_match_the_hand_computation_and_ignore_batch_size():
    model = pixel_model()
    grad, losses, _ = sample_gradients(model, pixels(XS), torch.tensor(YS))
    for i, (x, y) in enumerate(zip(XS, YS)):
        assert math.isclose(grad[i].item(), grad_by_hand(x, y), rel_tol=1e-9)
        assert math.isclose(losses[i].item(), loss_by_hand(x, y), rel_tol=1e-9)
    doubled, _, _ = sample_gradients(model, pixels(XS + XS), torch.tensor(YS + YS))
    assert torch.allclose(doubled[:3], grad)


# ---------------------------------------------------------------- GradAlign
def test_gradient_alignment_by_hand_skips_zero_gradients():
    g1 = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
    g2 = torch.tensor([[1.0, 1.0], [0.0, -1.0], [3.0, 1.0]])
    assert math.isclose(gradient_alignment(g1, g2).item(), (1 / math.sqrt(2) - 1) / 2, rel_tol=1e-6)
    assert gradient_alignment(torch.zeros(2, 3), torch.ones(2, 3)).item() == 1.0


def test_grad_align_regularizer_gradient_matches_finite_differences():
    model, (x, y) = smooth_model(), data(dtype=torch.float64)
    noise = Draws(0).uniform(x, -EPS, EPS)
    grad_x, _ = input_gradient(model, x, y, torch.zeros_like(x))
    reg = alignment_regularizer(model, x, y, grad_x, noise)
    assert 0 < reg.item() < 2
    check_param_gradient(lambda: alignment_regularizer(model, x, y, grad_x, noise), model)


def test_grad_align_loss_is_fgsm_loss_plus_lambda_times_misalignment(cobench_step_ctx):
    model, (x, y) = Capture(smooth_model()), data(dtype=torch.float64)
    ctx = cobench_step_ctx(model, EPS, seed=4)
    GradAlign(lam=0.7).train_step(Batch(x, y, torch.arange(len(x))), ctx)
    net = model.model
    delta = fgsm(net, x, y, EPS)  # zero init, step 1.25 eps projected = step eps
    noise = clamp_delta(x, Draws(4).uniform(x, -EPS, EPS))
    grad_x, _ = input_gradient(net, x, y, torch.zeros_like(x))
    expected = F.cross_entropy(net(x + delta), y) + 0.7 * alignment_regularizer(net, x, y, grad_x, noise)
    assert math.isclose(ctx.losses[0], expected.item(), rel_tol=1e-9)


# ---------------------------------------------------------------- LLR
def test_linearity_violation_by_hand():
    model, x, y = pixel_model(), pixels(XS), torch.tensor(YS)
    delta = pixels([0.05, -0.1, 0.08])
    grad, losses, _ = sample_gradients(model, x, y)
    got = linearity_violation(model, x, y, delta, losses, grad)
    for i, (xi, yi, di) in enumerate(zip(XS, YS, [0.05, -0.1, 0.08])):
        hand = abs(loss_by_hand(xi + di, yi) - loss_by_hand(xi, yi) - di * grad_by_hand(xi, yi))
        assert math.isclose(got[i].item(), hand, rel_tol=1e-9)
        assert hand > 0
    reg = llr_regularizer(model, x, y, delta, losses, grad, mu=0.3)
    by_hand = (
        sum(
            abs(loss_by_hand(a + d, b) - loss_by_hand(a, b) - d * grad_by_hand(a, b))
            + 0.3 * abs(d * grad_by_hand(a, b))
            for a, b, d in zip(XS, YS, [0.05, -0.1, 0.08])
        )
        / 3
    )
    assert math.isclose(reg.item(), by_hand, rel_tol=1e-9)
    zero = llr_regularizer(model, x, y, torch.zeros_like(x), losses, grad, mu=0.3)
    assert abs(zero.item()) < 1e-12


def test_llr_inner_search_increases_the_violation_inside_the_ball():
    model, (x, y) = smooth_model(), data(dtype=torch.float64)
    eps = 16 / 255
    grad, losses, _ = sample_gradients(model, x, y)
    init = Draws(1).uniform(x, -eps, eps)
    start = clamp_delta(x, init)
    found = find_violation(model, x, y, init, losses, grad, eps, steps=10, lr=0.1)
    assert found.abs().max() <= eps + 1e-12 and (x + found).min() >= 0 and (x + found).max() <= 1
    before = linearity_violation(model, x, y, start, losses, grad).mean()
    after = linearity_violation(model, x, y, found, losses, grad).mean()
    assert after > 1.5 * before
    assert torch.equal(find_violation(model, x, y, init, losses, grad, eps, steps=0, lr=0.1), start)


def test_llr_regularizer_gradient_through_double_backprop_matches_finite_differences():
    model, (x, y) = smooth_model(), data(dtype=torch.float64)
    delta = clamp_delta(x, Draws(2).uniform(x, -EPS, EPS))

    def reg():
        grad, losses, _ = sample_gradients(model, x, y, create_graph=True)
        return llr_regularizer(model, x, y, delta, losses, grad, mu=0.3)

    check_param_gradient(reg, model)


def test_llr_loss_is_weighted_clean_loss_plus_regularizer(cobench_step_ctx):
    model, (x, y) = Capture(smooth_model()), data(dtype=torch.float64)
    ctx = cobench_step_ctx(model, EPS, seed=6)
    LLR(steps=3).train_step(Batch(x, y, torch.arange(len(x))), ctx)
    net = model.model
    grad, losses, _ = sample_gradients(net, x, y)
    delta = find_violation(net, x, y, Draws(6).uniform(x, -EPS, EPS), losses, grad, EPS, steps=3, lr=0.1)
    expected = 2.0 * losses.mean() + 4.0 * llr_regularizer(net, x, y, delta, losses, grad, mu=0.3)
    assert math.isclose(ctx.losses[0], expected.item(), rel_tol=1e-9)


# ---------------------------------------------------------------- CURE
class ReferenceCURE:
    """F-Salehi/CURE_robustness CURE/CURE.py: ``_find_z``, ``regularizer`` and the loss of ``_train``.

    The reference passes ``torch.ones(targets.size())`` as the output gradient of its scalar
    losses, which current torch rejects; a scalar output gradient of 1 is used here instead."""

    def __init__(self, net, lambda_=4):
        self.net, self.lambda_, self.criterion = net, lambda_, nn.CrossEntropyLoss()

    def _find_z(self, inputs, targets, h):
        inputs.requires_grad_()
        loss_z = self.criterion(self.net.eval()(inputs), targets)
        loss_z.backward()
        grad = inputs.grad.data + 0.0
        z = torch.sign(grad).detach() + 0.0
        z = 1.0 * (h) * (z + 1e-7) / (z.reshape(z.size(0), -1).norm(dim=1)[:, None, None, None] + 1e-7)
        inputs.grad = None
        self.net.zero_grad()
        return z

    def regularizer(self, inputs, targets, h=3.0):
        z = self._find_z(inputs, targets, h)
        inputs.requires_grad_()
        outputs_pos = self.net.eval()(inputs + z)
        outputs_orig = self.net.eval()(inputs)
        loss_pos = self.criterion(outputs_pos, targets)
        loss_orig = self.criterion(outputs_orig, targets)
        grad_diff = torch.autograd.grad((loss_pos - loss_orig), inputs, create_graph=True)[0]
        reg = grad_diff.reshape(grad_diff.size(0), -1).norm(dim=1)
        self.net.zero_grad()
        return torch.sum(self.lambda_ * reg) / float(inputs.size(0))

    def loss(self, inputs, targets, h):
        outputs = self.net.train()(inputs)
        regularizer = self.regularizer(inputs, targets, h=h)
        return self.criterion(outputs, targets) + regularizer


def bn_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Flatten(), nn.Linear(64, 12), nn.BatchNorm1d(12), nn.Tanh(), nn.Linear(12, 3)).double()
    with torch.no_grad():
        m[2].running_mean.uniform_(-0.2, 0.2)
        m[2].running_var.uniform_(0.5, 2.0)
    return m


def test_cure_step_matches_the_reference_loss_and_parameter_gradient(cobench_step_ctx):
    x, y = data(dtype=torch.float64)
    x = x.clamp(3 * EPS, 1 - 3 * EPS)  # interior: the reference does not clamp x + z to the box
    ours, ref = bn_model(), bn_model()
    h = 0.7 * EPS * math.sqrt(64)  # our h = 0.7 is this absolute L2 length
    expected = ReferenceCURE(ref).loss(x.clone(), y, h)
    ref_grads = torch.autograd.grad(expected, list(ref.parameters()))
    ctx = cobench_step_ctx(ours, EPS)
    grads = {}
    ctx._update = lambda loss, logits, yy: grads.update(
        loss=loss, grads=torch.autograd.grad(loss, list(ours.parameters()))
    )
    CURE(lam=4.0, h=0.7).train_step(Batch(x, y, torch.arange(len(x))), ctx)
    assert math.isclose(grads["loss"].item(), expected.item(), rel_tol=1e-10)
    for g, rg in zip(grads["grads"], ref_grads):
        torch.testing.assert_close(g, rg, rtol=1e-8, atol=1e-12)
    assert ours.training
    torch.testing.assert_close(ours[2].running_mean, ref[2].running_mean)  # one train-mode pass each


def test_cure_regularizer_is_zero_without_a_step_and_differentiable():
    model, (x, y) = smooth_model(), data(dtype=torch.float64)
    assert curvature_regularizer(model, x, y, torch.zeros_like(x)).item() == 0
    z = clamp_delta(x, curvature_direction(model, x, y, EPS * 8))
    assert 0 < curvature_regularizer(model, x, y, z).item()
    check_param_gradient(lambda: curvature_regularizer(model, x, y, z), model)


class ReferenceELLETrainer:
    """LIONS-EPFL/ELLE core/utils/train.py: ``get_input_grad``, ``Trainer.loss`` (reg == 'CURE',
    one attack iteration, no noise, no clamp) and the 'onoff' lambda update of ``Trainer.train``."""

    def __init__(self, model, eps, lin_reg):
        import types

        self.model, self.criterion = model, nn.CrossEntropyLoss()
        self.args = types.SimpleNamespace(
            input_noise_rate=0.0,
            attack_eps=eps,
            attack_iter=1,
            attack_step=eps,
            clamp=False,
            reg="CURE",
            lin_reg=0,
            lambda_aux=lin_reg,
            sensitivity=2,
            decay_rate=0.99,
        )
        self.elle_values = []

    @staticmethod
    def get_input_grad(model, X, y, backprop=False):
        delta = torch.zeros_like(X, requires_grad=True)
        output = model(X + delta)
        loss = F.cross_entropy(output, y)
        grad = torch.autograd.grad(loss, delta, create_graph=True if backprop else False)[0]
        if not backprop:
            grad, delta = grad.detach(), delta.detach()
        return grad

    def loss(self, x, y):
        x_adv = x.clone() + self.args.input_noise_rate * self.args.attack_eps * (2 * torch.rand(x.shape) - 1)
        for _ in range(self.args.attack_iter):
            x_adv.requires_grad = True
            outputs = self.model(x_adv)
            self.criterion(outputs, y).backward(retain_graph=True)
            grads_input = x_adv.grad.clone()
            x_adv = x_adv + self.args.attack_step * torch.sign(grads_input)
            self.model.zero_grad()
        x_adv = x_adv.detach()
        out2 = self.model(x_adv)
        loss = self.criterion(out2, y)
        g_2 = self.get_input_grad(self.model, x, y, backprop=False)
        g_3 = self.get_input_grad(self.model, x_adv, y, backprop=True)
        lin_err = ((g_2 - g_3) * (g_2 - g_3)).mean(dim=0).sum()
        loss += self.args.lin_reg * lin_err
        return loss, lin_err.item()

    def step(self, x, y, opt):
        opt.zero_grad()
        loss, lin_err = self.loss(x, y)
        loss.backward()
        if len(self.elle_values) > 2 and lin_err > np.mean(self.elle_values) + self.args.sensitivity * np.std(
            self.elle_values
        ):
            self.args.lin_reg = self.args.lambda_aux
        else:
            self.args.lin_reg *= self.args.decay_rate
        self.elle_values.append(lin_err)
        opt.step()
        return loss.item()


def test_cure_elle_matches_the_elle_repositorys_cure_over_steps():
    from cobench.api import StepContext
    from cobench.methods.cure import CUREElle
    from cobench.testing import RecordingStep

    eps = 16 / 255
    ours, ref = bn_model(1), bn_model(1)
    reference = ReferenceELLETrainer(ref, eps, lin_reg=5.0)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.01)
    opt = torch.optim.SGD(ours.parameters(), lr=0.01)
    losses = []

    def update(loss, logits, y):
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())

    ctx = StepContext(ours, RecordingStep(ours, eps).setup, update, -math.inf, math.inf)  # no clamp, as ELLE
    method = CUREElle(lam_max=5.0)
    method.setup(ctx.setup)
    lams = []
    for seed in (7, 7, 7, 7, 9, 9, 6, 10):  # a low-error batch, then a high-error one: lam switches on, then decays
        x, y = data(seed=seed, dtype=torch.float64)
        expected = reference.step(x, y, ref_opt)
        method.train_step(Batch(x, y, torch.arange(len(x))), ctx)
        assert math.isclose(losses[-1], expected, rel_tol=1e-9), seed
        assert math.isclose(method.lam.lam, reference.args.lin_reg, rel_tol=1e-9, abs_tol=1e-12)
        lams.append(method.lam.lam)
    for p, q in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-7, atol=1e-10)
    torch.testing.assert_close(ours[2].running_mean, ref[2].running_mean)
    assert max(lams) == 5.0 and 0 < lams[-1] < 5.0  # the on/off schedule switched on, then decayed


# ---------------------------------------------------------------- ELLE
def test_linearity_error_by_hand_and_zero_on_degenerate_triplets():
    model, y = pixel_model(), torch.tensor(YS)
    xa, xb, a = pixels([0.1, 0.4, 0.7]), pixels([0.3, 0.2, 0.95]), torch.tensor([0.25, 0.5, 0.9], dtype=torch.float64)
    got = linearity_error(model, xa, xb, a, y)
    hand = 0.0
    for pa, pb, w, yi in zip([0.1, 0.4, 0.7], [0.3, 0.2, 0.95], [0.25, 0.5, 0.9], YS):
        pc = (1 - w) * pa + w * pb
        hand += (loss_by_hand(pc, yi) - (1 - w) * loss_by_hand(pa, yi) - w * loss_by_hand(pb, yi)) ** 2
    assert math.isclose(got.item(), hand / 3, rel_tol=1e-9) and hand > 0
    assert linearity_error(model, xa, xa, a, y).item() < 1e-24


def test_linearity_error_gradient_matches_finite_differences():
    model, (x, y) = smooth_model(), data(dtype=torch.float64)
    d = Draws(3)
    xa, xb = x + d.uniform(x, -EPS, EPS), x + d.uniform(x, -EPS, EPS)
    a = d.uniform(y.double(), 0, 1)
    check_param_gradient(lambda: linearity_error(model, xa, xb, a, y), model)


def test_elle_loss_is_fgsm_loss_plus_lambda_times_triplet_error(cobench_step_ctx):
    model, (x, y) = Capture(smooth_model()), data(dtype=torch.float64)
    ctx = cobench_step_ctx(model, EPS, seed=8)
    ELLE(lam=50.0).train_step(Batch(x, y, torch.arange(len(x))), ctx)
    net = model.model
    d = Draws(8)
    xa, xb = x + clamp_delta(x, d.uniform(x, -EPS, EPS)), x + clamp_delta(x, d.uniform(x, -EPS, EPS))
    a = d.uniform(y.double(), 0, 1)
    expected = F.cross_entropy(net(x + fgsm(net, x, y, EPS)), y) + 50.0 * linearity_error(net, xa, xb, a, y)
    assert math.isclose(ctx.losses[0], expected.item(), rel_tol=1e-9)
    triplet = model.inputs[-1]
    assert len(triplet) == 3 * len(x) and triplet.min() >= 0 and triplet.max() <= 1
    assert (triplet[: 2 * len(x)] - x.repeat(2, 1, 1, 1)).abs().max() <= EPS + 1e-12


# ---------------------------------------------------------------- GAT
def test_probability_gap_by_hand():
    p = torch.tensor([[1.0, 0.0], [0.2, 0.8]])
    q = torch.tensor([[0.5, 0.5], [0.2, 0.8]])
    assert math.isclose(probability_gap(p, q).item(), 0.25, rel_tol=1e-6)


def test_gat_guided_step_alternates_and_training_loss_is_clean_ce_plus_gap(cobench_step_ctx):
    model, (x, y) = Capture(smooth_model()), data(dtype=torch.float64)
    ctx = cobench_step_ctx(model, EPS, seed=9)
    method = GAT()
    draws = Draws(9)
    for it in range(2):
        model.inputs.clear()
        method.train_step(Batch(x, y, torch.arange(len(x))), ctx)
        net = model.model
        p = F.softmax(net(x), 1).detach()
        signs = (draws.uniform(x, -1.0, 1.0) > 0).double() * 2 - 1
        start = (x + clamp_delta(x, 0.5 * EPS * signs)).requires_grad_(True)
        cost = F.cross_entropy(net(start), y)
        if it == 1:  # the guidance term is on every other iteration
            cost = cost + 10.0 * probability_gap(p, F.softmax(net(start), 1))
        g = torch.autograd.grad(cost, start)[0]
        delta = clamp_delta(x, ((start + EPS * g.sign()).clamp(0, 1) - x).clamp(-EPS, EPS)).detach()
        used = model.inputs[-2] - x  # the adversarial training forward, then the clean one
        assert torch.allclose(used, delta, atol=1e-12)
        assert used.abs().max() <= EPS + 1e-12
        expected = F.cross_entropy(net(x), y) + 10.0 * probability_gap(
            F.softmax(net(x), 1), F.softmax(net(x + delta), 1)
        )
        assert math.isclose(ctx.losses[it], expected.item(), rel_tol=1e-9)
