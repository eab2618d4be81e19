"""Evaluators: AutoAttack, the PGD-50-10 preset, carrier/no-injection accuracy, gradient alignment, LLE."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from cobench.api import EvalContext, InjectionContext
from cobench.attacks import accuracy, uniform_like
from cobench.evaluators.linearity import elle_error, gradient_alignment, linearity_error, llr_gamma
from cobench.grid.resolve import resolve
from cobench.run.evaluation import evaluation_mode


class MatchedFilter(nn.Module):
    """logits_k = <V[k], x>: picks the class whose carrier correlates best with the input."""

    def __init__(self, carriers: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(carriers.flatten(1).clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.w.T


def linear_model(classes: int, shape=(1, 8, 8), seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(shape)), classes))


def eval_ctx(
    pm, injection: str, x, y, classes: int, beta: float = 8 / 255, eps: float = 8 / 255, **params
) -> EvalContext:
    inj = pm.registry.get("injections", injection)(**params)
    inj.prepare(InjectionContext(beta=beta, num_classes=classes, image_shape=tuple(x.shape[1:]), seed=0), x, y)
    test_x = inj.apply(x, y)
    return EvalContext(
        eps=eps,
        test_x=test_x,
        test_y=y,
        clean_test_x=x,
        injection=inj,
        num_classes=classes,
        device=torch.device("cpu"),
        batch_size=16,
        seed=0,
        probe_x=test_x[:8],
        probe_y=y[:8],
    )


def evaluate(pm, name: str, model, ctx, **params):
    ev = pm.registry.get("evaluators", name)(**params)
    with evaluation_mode(model):
        return ev.evaluate(model, ctx)


# --------------------------------------------------------------------------- carrier / no-injection accuracy
@pytest.mark.parametrize(
    "injection, expected",
    [("low-freq", 1.0), ("low-freq-sub", 0.0), ("perp", 1.0), ("high-freq", 1.0), ("random", 1.0)],
)
def test_carrier_accuracy_of_a_matched_filter(pm, injection, expected):
    k, shape = 10, (3, 8, 8)
    x, y = torch.rand(20, *shape), torch.arange(20) % k
    ctx = eval_ctx(pm, injection, x, y, k)
    model = MatchedFilter(ctx.injection.carriers)
    # carrier-only images beta * V[y] maximise <V[y], .> (the carriers' Gram matrix peaks on its diagonal);
    # the subtractive variant's -beta * V[y] minimises it, so no class is right
    assert evaluate(pm, "carrier-acc", model, ctx)["carrier_acc"] == expected


def test_no_injection_accuracy_per_epoch_is_opt_in_and_unrecorded_at_its_default(pm):
    """Stored cells were hashed before ``per_epoch`` existed: at its default it stays out of the config."""
    from cobench.grid.resolve import resolve_component

    assert resolve_component(pm.registry, "evaluators", "no-injection-acc", {}).params == {}
    on = {"evaluators": {"no-injection-acc": {"per_epoch": True}}}
    assert resolve_component(pm.registry, "evaluators", "no-injection-acc", on).params == {"per_epoch": True}
    x, y = torch.rand(20, 3, 8, 8), torch.arange(20) % 10
    ctx = eval_ctx(pm, "low-freq", x, y, 10)
    model = MatchedFilter(ctx.injection.carriers)
    assert pm.registry.get("evaluators", "no-injection-acc")().on_epoch_end(model, ctx, 1) is None


def test_carrier_accuracy_is_none_without_carriers(pm):
    x, y = torch.rand(8, 1, 8, 8), torch.arange(8) % 4
    for injection in ("none", "low-pass"):
        ctx = eval_ctx(pm, injection, x, y, 4)
        assert evaluate(pm, "carrier-acc", linear_model(4), ctx) == {"carrier_acc": None}


def test_no_injection_accuracy_scores_the_test_set_before_injection(pm):
    k, shape, beta = 10, (1, 8, 8), 8 / 255
    y = torch.arange(30) % k
    from cobench.injections.carriers import dct_carriers

    v = dct_carriers(k, shape)
    clean = 0.5 - beta * v[y]  # the clean images carry the opposite feature...
    ctx = eval_ctx(pm, "low-freq", clean, y, k, beta=2 * beta)  # ...the injection flips it to +beta V[y]
    model = MatchedFilter(v)
    assert evaluate(pm, "clean", model, ctx)["clean_acc"] == 1.0
    assert evaluate(pm, "no-injection-acc", model, ctx)["no_injection_acc"] == 0.0
    assert evaluate(pm, "no-injection-acc", model, ctx)["no_injection_acc"] == accuracy(model, clean, y)


# --------------------------------------------------------------------------- gradient alignment
def test_gradient_alignment_of_a_binary_linear_model_is_one(pm):
    # for 2 classes the cross-entropy gradient is (p_1 - [y=1]) (w_1 - w_0): always the same direction
    x, y = torch.rand(32, 1, 8, 8), torch.arange(32) % 2
    ctx = eval_ctx(pm, "none", x, y, 2, eps=32 / 255)
    out = evaluate(pm, "grad-align", linear_model(2), ctx)
    assert out["grad_align"] == pytest.approx(1.0, abs=1e-5)


def test_gradient_alignment_of_a_quadratic_loss_matches_hand_computation():
    # l(x) = ||x||^2 / 2 has gradient x: the alignment is cos(x, x + eta)
    x = torch.rand(6, 2, 3, 3, dtype=torch.float64)
    loss = lambda z: 0.5 * (z**2).flatten(1).sum(1)  # noqa: E731
    eps = 0.3
    cos = gradient_alignment(loss, x, eps, torch.Generator().manual_seed(7))
    eta = uniform_like(x, -eps, eps, torch.Generator().manual_seed(7))
    a, b = x.flatten(1), (x + eta).flatten(1)
    assert torch.allclose(cos, (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)), atol=1e-12)
    assert gradient_alignment(lambda z: z.flatten(1).sum(1) * 0, x, eps).numel() == 0  # zero gradients left out


def test_gradient_alignment_drops_for_a_curved_model(pm):
    torch.manual_seed(0)
    x, y = torch.rand(32, 1, 8, 8), torch.arange(32) % 10
    ctx = eval_ctx(pm, "none", x, y, 10, eps=64 / 255)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))
    value = evaluate(pm, "grad-align", net, ctx)["grad_align"]
    assert -1.0 <= value < 0.999


# --------------------------------------------------------------------------- local linearity error
def test_linearity_error_is_zero_for_a_linear_loss_and_exact_for_a_quadratic():
    g = torch.Generator().manual_seed(0)
    x_a, x_b = torch.rand(5, 12, generator=g, dtype=torch.float64), torch.rand(5, 12, generator=g, dtype=torch.float64)
    alpha = torch.rand(5, generator=g, dtype=torch.float64)
    w = torch.randn(12, generator=g, dtype=torch.float64)
    assert linearity_error(lambda z: z @ w + 3.0, x_a, x_b, alpha).abs().max() < 1e-12
    # ||(1-a) x_a + a x_b||^2 - (1-a)||x_a||^2 - a||x_b||^2 = -a (1-a) ||x_a - x_b||^2
    err = linearity_error(lambda z: (z**2).sum(1), x_a, x_b, alpha)
    assert torch.allclose(err, -alpha * (1 - alpha) * ((x_a - x_b) ** 2).sum(1), atol=1e-12)


def test_elle_error_replays_its_draws_from_the_eps_ball():
    x, eps = torch.rand(4, 3, 2, 2, dtype=torch.float64), 0.1
    loss = lambda z: (z**2).flatten(1).sum(1)  # noqa: E731
    got = elle_error(loss, x, eps, torch.Generator().manual_seed(3), draws=2)
    g = torch.Generator().manual_seed(3)
    expected = torch.zeros(4, dtype=torch.float64)
    for _ in range(2):  # draw order: x_a noise, x_b noise, alpha
        x_a, x_b = x + uniform_like(x, -eps, eps, g), x + uniform_like(x, -eps, eps, g)
        assert (x_a - x).abs().max() <= eps and (x_b - x).abs().max() <= eps
        a = torch.rand(4, generator=g, dtype=torch.float64)
        expected += (a * (1 - a) * ((x_a - x_b) ** 2).flatten(1).sum(1)) ** 2
    assert torch.allclose(got, expected / 2, atol=1e-14)


def test_llr_gamma_is_zero_for_linear_and_half_d_eps_squared_for_a_quadratic():
    x, eps = torch.rand(3, 1, 4, 4, dtype=torch.float64), 0.05
    w = torch.randn(16, dtype=torch.float64)
    assert llr_gamma(lambda z: z.flatten(1) @ w, x, eps).abs().max() < 1e-12
    # l = ||x||^2 / 2: l(x+d) - l(x) - d.grad = ||d||^2 / 2, largest at the ball's corners: d * eps^2 / 2
    gamma = llr_gamma(
        lambda z: 0.5 * (z**2).flatten(1).sum(1), x, eps, steps=8, generator=torch.Generator().manual_seed(0)
    )
    assert torch.allclose(gamma, torch.full((3,), 16 * eps**2 / 2, dtype=torch.float64), atol=1e-14)


def test_lle_evaluator_is_positive_for_a_curved_model_and_zero_for_a_constant_loss(pm):
    x, y = torch.rand(16, 1, 8, 8), torch.arange(16) % 10
    ctx = eval_ctx(pm, "none", x, y, 10, eps=64 / 255)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))
    for p in net.parameters():
        p.data.mul_(8)
    elle = evaluate(pm, "lle", net, ctx)["lle"]
    llr = evaluate(pm, "lle", net, ctx, kind="llr")["lle_llr"]
    assert elle > 0 and llr > 0
    with torch.no_grad():
        net[3].weight.zero_()  # constant logits: a constant loss is exactly linear
    assert evaluate(pm, "lle", net, ctx)["lle"] == pytest.approx(0.0, abs=1e-12)
    assert evaluate(pm, "lle", net, ctx, kind="llr")["lle_llr"] == pytest.approx(0.0, abs=1e-6)


# --------------------------------------------------------------------------- PGD-50-10 preset
def test_pgd_50_10_preset_uses_the_papers_protocol(pm, monkeypatch):
    import cobench.evaluators.accuracy as acc_mod

    calls = []
    real = acc_mod.pgd_until_fooled

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **{**kwargs, "steps": 1, "restarts": 2})

    monkeypatch.setattr(acc_mod, "pgd_until_fooled", spy)
    x, y = torch.rand(8, 1, 8, 8), torch.arange(8) % 3
    for eps255 in (8, 16):
        ctx = eval_ctx(pm, "none", x, y, 3, eps=eps255 / 255)
        out = evaluate(pm, "pgd-50-10", linear_model(3), ctx)
        assert set(out) == {"pgd50_10_acc"} and 0 <= out["pgd50_10_acc"] <= 1
        assert calls[-1]["steps"] == 50 and calls[-1]["restarts"] == 10
        assert calls[-1]["alpha"] == pytest.approx(2 / 255)  # step 2/255 whatever eps, as in the paper's configs


def test_pgd_50_10_never_beats_clean_accuracy(pm):
    x, y = torch.rand(12, 1, 8, 8), torch.arange(12) % 3
    ctx = eval_ctx(pm, "none", x, y, 3, eps=16 / 255)
    model = linear_model(3)
    out = evaluate(pm, "pgd-50-10", model, ctx, steps=5, restarts=2)
    assert out["pgd50_10_acc"] <= accuracy(model, x, y)


# --------------------------------------------------------------------------- AutoAttack
def exact_linear_robust_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> float:
    """Exact L-inf robust accuracy of a linear classifier on [0, 1] images.

    x is broken iff for some class j the margin f_y - f_j can be made <= 0: each margin is linear in
    the perturbation d, so its minimum over the box [-x, 1-x] and the ball [-eps, eps] is attained
    coordinate-wise at the end of the interval [max(-eps, -x), min(eps, 1-x)] that c_i d_i prefers.
    """
    lin = model[1]
    flat = x.flatten(1).double()
    w, b = lin.weight.double(), lin.bias.double()
    lo, hi = torch.clamp(-flat, min=-eps), torch.clamp(1 - flat, max=eps)
    robust = torch.ones(len(x), dtype=torch.bool)
    for j in range(w.shape[0]):
        c = w[y] - w[j]  # margin_j(x + d) = margin_j(x) + c . d
        margin = (flat * c).sum(1) + b[y] - b[j]
        worst = margin + torch.where(c > 0, c * lo, c * hi).sum(1)
        robust &= (j == y) | (worst > 0)
    return robust.double().mean().item()


@pytest.mark.parametrize(
    "version, classes, eps255, expected_attacks",
    [
        ("fast", 10, 16, ["apgd-ce", "apgd-t"]),
        ("standard", 3, 16, ["apgd-ce", "fab-t", "square"]),  # APGD-T needs >= 4 classes: dropped and recorded
    ],
)
def test_autoattack_on_cpu_finds_the_exact_robust_accuracy_of_a_linear_model(
    pm, version, classes, eps255, expected_attacks
):
    torch.manual_seed(0)
    n = 24
    x, y = torch.rand(n, 1, 8, 8), torch.arange(n) % classes
    model = linear_model(classes)
    with torch.no_grad():  # a model that is right on most points, by a margin comparable to eps
        model[1].weight.copy_(torch.randn(classes, 64) * 0.05)
        model[1].bias.copy_(-(model[1].weight @ x.flatten(1).T).T.mean(0))
        for k in range(classes):
            model[1].weight[k] += 0.5 * (x[y == k].flatten(1).mean(0) - x.flatten(1).mean(0))
    eps = eps255 / 255
    ctx = eval_ctx(pm, "none", x, y, classes, eps=eps)
    out = evaluate(
        pm, "autoattack", model, ctx, version=version, n_iter=20, n_samples=n, seed=3 if version == "fast" else None
    )
    info = out["autoattack_info"]
    assert info["backend"] == "pyautoattack" and info["backend_version"] == __import__("pyautoattack").__version__
    assert info["version"] == version and info["attacks"] == expected_attacks
    assert info["seed"] == (3 if version == "fast" else 0)  # default: the cell's seed
    assert info["n_samples"] == n and info["n_iter"] == 20
    assert info["max_linf"] <= eps + 1e-6  # adversarial examples stay in the eps-ball
    clean = accuracy(model, x, y)
    exact = exact_linear_robust_accuracy(model, x, y, eps)
    assert out["autoattack_clean_acc"] == clean
    assert 0 < exact < clean  # the case is not trivial
    assert out["autoattack_acc"] == pytest.approx(exact)  # an exact lower bound, and AutoAttack reaches it


def test_autoattack_rejects_unknown_versions(pm):
    from cobench.errors import ConfigError

    with pytest.raises(ConfigError, match="standard, fast"):
        pm.registry.get("evaluators", "autoattack")(version="plus")


# --------------------------------------------------------------------------- through the runner
def test_analyses_run_per_epoch_and_at_the_end_in_a_cell(pm, tmp_path):
    from cobench.grid.spec import GridSpec
    from cobench.run.cell_worker import execute_cell
    from cobench.store.results import flat_row

    from . import formats

    path = tmp_path / "d.npz"
    formats.write_npz(path, shape=(8, 8), classes=4, n_train=32, n_test=16)
    spec = GridSpec(
        datasets=[f"npz:{path}"],
        methods=["fgsm"],
        eps=[8],
        injections=["perp"],
        betas=[16],
        evaluators=["clean", "carrier-acc", "no-injection-acc", "grad-align", "lle", "pgd-50-10", "autoattack"],
    )
    spec.override(epochs=2, batch_size=8, probe_size=8)
    spec.set_param("models.small-cnn.width=4")
    spec.set_param("evaluators.pgd-50-10.steps=2")
    spec.set_param("evaluators.pgd-50-10.restarts=2")
    spec.set_param('evaluators.autoattack.version="fast"')
    spec.set_param("evaluators.autoattack.n_iter=3")
    spec.set_param("evaluators.no-injection-acc.per_epoch=true")
    (cell,) = resolve(spec, pm.registry)
    result = execute_cell(cell.config(), {"device": "cpu"})
    assert result["status"] == "ok", result.get("error")
    m, curves = result["metrics"], result["curves"]
    for key in ("clean_acc", "carrier_acc", "no_injection_acc", "grad_align", "lle", "pgd50_10_acc", "autoattack_acc"):
        assert key in m and (m[key] is None or math.isfinite(m[key])), key
    assert m["autoattack_acc"] <= m["autoattack_clean_acc"] == m["clean_acc"]
    for key in ("probe_carrier_acc", "probe_no_injection_acc", "probe_grad_align", "probe_lle"):
        assert len(curves[key]) == 2
    # the last epoch's probe is the final model's accuracy on the images without the feature
    assert curves["probe_no_injection_acc"][-1] == m["no_injection_acc"]
    row = flat_row(result)
    assert "autoattack_info" not in row and row["autoattack_acc"] == m["autoattack_acc"]
