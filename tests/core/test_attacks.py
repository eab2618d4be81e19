"""The mathematics of FGSM, N-FGSM and PGD perturbations (training and evaluation)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cobench.api import Batch
from cobench.attacks import fgsm, input_gradient, pgd
from cobench.methods.fgsm import FGSM
from cobench.methods.n_fgsm import NFGSM
from cobench.methods.pgd import PGDAT

EPS = 8 / 255


class Capture(nn.Module):
    """Wraps a model and remembers the last input it saw (to inspect the training input)."""

    def __init__(self, model):
        super().__init__()
        self.model, self.inputs = model, []

    def forward(self, x):
        self.inputs.append(x.detach().clone())
        return self.model(x)


def linear_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 3))


def data(seed=0, n=16):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 8, 8, generator=g)
    x[:4] = 0.0  # saturated pixels exercise the [0,1] clamp
    x[4:8] = 1.0
    return x, torch.randint(0, 3, (n,), generator=g)


def test_fgsm_is_eps_times_sign_of_gradient_clamped_to_image_range():
    model = linear_model()
    x, y = data()
    delta = fgsm(model, x, y, EPS)
    grad, _ = input_gradient(model, x, y, torch.zeros_like(x))
    expected = (x + EPS * grad.sign()).clamp(0, 1) - x
    assert torch.allclose(delta, expected, atol=1e-7)
    assert delta.abs().max() <= EPS + 1e-7
    assert (x + delta).min() >= 0 and (x + delta).max() <= 1


def test_fgsm_increases_the_loss_of_a_linear_model():
    model = linear_model()
    x, y = data()
    x = x * 0.5 + 0.25  # interior: no clamping
    delta = fgsm(model, x, y, EPS)
    assert F.cross_entropy(model(x + delta), y) > F.cross_entropy(model(x), y)


def test_fgsm_method_trains_on_the_fgsm_point(cobench_step_ctx):
    model = Capture(linear_model())
    x, y = data()
    ctx = cobench_step_ctx(model, EPS)
    FGSM().train_step(Batch(x, y, torch.arange(len(x))), ctx)
    trained_on = model.inputs[-1]
    assert torch.allclose(trained_on - x, fgsm(model.model, x, y, EPS), atol=1e-7)
    assert len(ctx.losses) == 1


def test_n_fgsm_noise_then_unprojected_step(cobench_step_ctx):
    torch.manual_seed(0)
    model = Capture(linear_model())
    x, y = data(n=64)
    x = x * 0.5 + 0.25  # interior: no clamping, so the raw N-FGSM geometry is visible
    ctx = cobench_step_ctx(model, EPS, seed=3)
    NFGSM().train_step(Batch(x, y, torch.arange(len(x))), ctx)
    first, trained_on = model.inputs[0], model.inputs[-1]
    noise = first - x
    assert noise.abs().max() <= 2 * EPS + 1e-6
    assert noise.abs().max() > 1.5 * EPS  # uniform over [-2eps, 2eps], not [-eps, eps]
    delta = trained_on - x
    # step of exactly eps along the sign of the gradient at the noisy point, no projection
    grad, _ = input_gradient(model.model, x, y, noise)
    assert torch.allclose(delta, noise + EPS * grad.sign(), atol=1e-6)
    assert delta.abs().max() <= 3 * EPS + 1e-6
    assert delta.abs().max() > EPS  # not projected to the eps-ball


def test_n_fgsm_is_seeded_by_the_cell_generator(cobench_step_ctx):
    x, y = data()
    runs = []
    for _ in range(2):
        model = Capture(linear_model())
        NFGSM().train_step(Batch(x, y, torch.arange(len(x))), cobench_step_ctx(model, EPS, seed=7))
        runs.append(model.inputs[-1])
    assert torch.equal(runs[0], runs[1])


def test_pgd_stays_in_the_ball_and_beats_fgsm_on_a_nonlinear_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 3))
    x, y = data(n=64)
    g = torch.Generator().manual_seed(0)
    delta = pgd(model, x, y, EPS, alpha=EPS / 4, steps=10, restarts=1, generator=g)
    assert delta.abs().max() <= EPS + 1e-6
    assert (x + delta).min() >= 0 and (x + delta).max() <= 1
    loss_pgd = F.cross_entropy(model(x + delta), y)
    assert loss_pgd >= F.cross_entropy(model(x + fgsm(model, x, y, EPS)), y) - 1e-4
    assert loss_pgd > F.cross_entropy(model(x), y)


def test_pgd_restarts_keep_per_sample_worst_case():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3))
    x, y = data(n=64)
    one = pgd(model, x, y, EPS, alpha=EPS / 4, steps=3, restarts=1, generator=torch.Generator().manual_seed(0))
    many = pgd(model, x, y, EPS, alpha=EPS / 4, steps=3, restarts=5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        wrong_one = (model(x + one).argmax(1) != y).sum()
        wrong_many = (model(x + many).argmax(1) != y).sum()
    assert wrong_many >= wrong_one
    assert many.abs().max() <= EPS + 1e-6


def test_pgd_at_method_keeps_batchnorm_in_train_mode(cobench_step_ctx):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(256, 3))
    model.train()
    seen_modes = []
    model[1].register_forward_pre_hook(lambda m, i: seen_modes.append(m.training))
    x, y = data()
    ctx = cobench_step_ctx(model, EPS)
    PGDAT(steps=3).train_step(Batch(x, y, torch.arange(len(x))), ctx)
    assert seen_modes and all(seen_modes)
    assert len(seen_modes) == 3 + 1  # 3 attack forwards + 1 training forward
