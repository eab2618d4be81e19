"""Carriers for any image shape and class count, and the injections built on them."""

from __future__ import annotations

import math

import pytest
import torch

from cobench.api import InjectionContext
from cobench.errors import CobenchError, ConfigError
from cobench.grid.resolve import resolve
from cobench.injections.carriers import (
    PAPER_PM_FREQUENCIES,
    CarrierError,
    dct2,
    dct_basis,
    dct_carriers,
    dct_matrix,
    idct2,
    low_pass,
    low_pass_mask,
    orthonormal_basis,
    pm_carriers,
    project_out,
    random_carriers,
    sign_pattern,
    zigzag,
)

SHAPES = [(3, 32, 32), (1, 28, 28), (3, 9, 7), (4, 5, 6), (1, 4, 4)]


def ctx(shape, k, beta=8 / 255, seed=0):
    return InjectionContext(beta=beta, num_classes=k, image_shape=shape, seed=seed)


def make(pm, name, image_shape, k, beta=8 / 255, n=30, **params):
    inj = pm.registry.get("injections", name)(**params)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, *image_shape, generator=g)
    y = torch.arange(n) % k
    inj.prepare(ctx(image_shape, k, beta), x, y)
    return inj, x, y


# --------------------------------------------------------------------------- carriers
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("band", ["low", "high"])
def test_dct_carriers_are_unit_sign_patterns_identical_across_channels(shape, band):
    c, h, w = shape
    k = min(10, h * w - 1)
    v = dct_carriers(k, shape, band=band)
    assert v.shape == (k, c, h, w)
    assert torch.all(v.abs() == 1)  # every entry is +-1, so ||V[c]||_inf = 1 and ||V[c]||_2 = sqrt(CHW)
    assert torch.allclose(v.flatten(1).norm(dim=1), torch.full((k,), math.sqrt(c * h * w)))
    for ch in range(1, c):
        assert torch.equal(v[:, ch], v[:, 0])
    assert len({tuple(p.flatten().tolist()) for p in v[:, 0]}) == k  # distinct per class


@pytest.mark.parametrize("h, w", [(8, 8), (9, 7), (1, 5), (6, 3)])
def test_zigzag_is_jpeg_order_for_any_rectangle(h, w):
    order = zigzag(h, w)
    assert sorted(order) == [(u, v) for u in range(h) for v in range(w)]
    sums = [u + v for u, v in order]
    assert sums == sorted(sums)  # anti-diagonals in increasing frequency
    for s in set(sums):  # within a diagonal the direction alternates like JPEG's
        diag = [uv for uv in order if sum(uv) == s]
        key = [v for _, v in diag] if s % 2 == 0 else [u for u, _ in diag]
        assert key == sorted(key)


def test_low_and_high_carriers_follow_the_zigzag_prefix_and_suffix():
    shape = (1, 9, 7)
    order = zigzag(9, 7)
    low, high = dct_carriers(6, shape, band="low"), dct_carriers(6, shape, band="high")
    for c in range(6):
        assert torch.equal(low[c, 0], sign_pattern(dct_basis(9, 7, *order[1 + c])).float())
        assert torch.equal(high[c, 0], sign_pattern(dct_basis(9, 7, *order[-1 - c])).float())
    # the low carriers of K classes are the first K of those of more classes: a zig-zag prefix
    assert torch.equal(dct_carriers(3, shape), dct_carriers(12, shape)[:3])


@pytest.mark.parametrize("h, w", [(8, 8), (7, 5), (32, 32)])
def test_underlying_dct_basis_is_orthonormal(h, w):
    for n in (h, w):
        d = dct_matrix(n)
        assert torch.allclose(d @ d.T, torch.eye(n, dtype=d.dtype), atol=1e-12)
    basis = torch.stack([dct_basis(h, w, u, v).flatten() for u, v in zigzag(h, w)])
    assert torch.allclose(basis @ basis.T, torch.eye(h * w, dtype=basis.dtype), atol=1e-10)


def test_too_many_classes_is_a_clear_cobench_error():
    with pytest.raises(CobenchError, match=r"4x4 image has only 15 DCT frequencies for 16 classes"):
        dct_carriers(16, (3, 4, 4))
    with pytest.raises(ValueError):  # also a ValueError, for callers that catch that
        dct_carriers(16, (3, 4, 4), band="high")
    with pytest.raises(CarrierError, match="only 3 DCT frequencies for the 4"):
        pm_carriers(8, (1, 2, 2))
    dct_carriers(15, (3, 4, 4))  # exactly as many frequencies as classes is fine


def test_random_carriers_are_rademacher_deterministic_per_seed():
    a = random_carriers(7, (3, 6, 5), seed=3)
    assert torch.equal(a, random_carriers(7, (3, 6, 5), seed=3))
    assert not torch.equal(a, random_carriers(7, (3, 6, 5), seed=4))
    assert set(a.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(a[:, 0], a[:, 2])
    big = random_carriers(2, (1, 64, 64), seed=0)
    assert abs(big.mean().item()) < 0.05  # balanced signs


def test_pm_carriers_are_exactly_the_papers_cifar10_carrier():
    v = pm_carriers(10, (3, 32, 32))
    # the paper's create_linf_carrier: V[c] = sign(idct_2d(one-hot at frequency f_c)), f = PAPER_PM_FREQUENCIES,
    # V[c+5] = -V[c]; idct_2d of a one-hot at [u, v] is the outer product of DCT rows u and v
    for c, (u, s) in enumerate(PAPER_PM_FREQUENCIES):
        expected = torch.sign(torch.outer(dct_matrix(32)[u], dct_matrix(32)[s])).float()
        assert torch.equal(v[c, 1], expected) and torch.equal(v[c + 5, 2], -expected)
    assert torch.linalg.matrix_rank(v.flatten(1).double()) == 5


def test_pm_carriers_for_odd_class_counts_and_small_images():
    v = pm_carriers(5, (1, 2, 2))  # (1,2) and (2,1) do not fit a 2x2 image: zig-zag fills in
    assert v.shape == (5, 1, 2, 2)
    assert torch.equal(v[3], -v[0]) and torch.equal(v[4], -v[1])
    assert torch.all(v.abs() == 1)


# --------------------------------------------------------------------------- projections and DCT filtering
def test_orthonormal_basis_spans_dependent_non_orthogonal_vectors():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 20, generator=g, dtype=torch.float64)
    vecs = torch.cat([a, a[:1] + 2 * a[1:2], -a[2:3]])  # 5 vectors spanning 3 dimensions
    q = orthonormal_basis(vecs)
    assert q.shape == (20, 3)
    assert torch.allclose(q.T @ q, torch.eye(3, dtype=q.dtype), atol=1e-12)
    assert torch.allclose(q @ (q.T @ vecs.T), vecs.T, atol=1e-10)  # every vector lies in span(Q)


def test_project_out_leaves_nothing_along_any_carrier():
    v = dct_carriers(10, (3, 8, 8))
    x = torch.rand(16, 3, 8, 8, dtype=torch.float64)
    px = project_out(x, orthonormal_basis(v))
    assert (px.flatten(1) @ v.flatten(1).double().T).abs().max() < 1e-10
    assert torch.allclose(project_out(px, orthonormal_basis(v)), px, atol=1e-12)  # idempotent


def explicit_dct2(x):
    """The 2-D DCT-II as an explicit double sum over pixels, for one (H, W) image."""
    h, w = x.shape
    d_h, d_w = dct_matrix(h), dct_matrix(w)
    out = torch.zeros(h, w, dtype=torch.float64)
    for u in range(h):
        for v in range(w):
            out[u, v] = sum(d_h[u, i] * d_w[v, j] * x[i, j] for i in range(h) for j in range(w))
    return out


def test_dct2_matches_an_explicit_double_sum_and_inverts():
    x = torch.rand(2, 3, 5, 4, dtype=torch.float64)
    coeffs = dct2(x)
    assert torch.allclose(coeffs[1, 2], explicit_dct2(x[1, 2]), atol=1e-12)
    assert torch.allclose(idct2(coeffs), x, atol=1e-12)


@pytest.mark.parametrize("shape", ["rows", "square", "triangle"])
def test_low_pass_keeps_exactly_the_band(shape):
    x = torch.rand(3, 2, 8, 6, dtype=torch.float64)
    out = low_pass(x, 3, shape)
    kept = low_pass_mask(8, 6, 3, shape).bool()
    keeps = {"rows": lambda u, v: u < 3, "square": lambda u, v: u < 3 and v < 3, "triangle": lambda u, v: u + v < 3}
    expected = {(u, v) for u in range(8) for v in range(6) if keeps[shape](u, v)}
    assert {tuple(i) for i in kept.nonzero().tolist()} == expected
    coeffs = dct2(out)
    assert coeffs[..., ~kept].abs().max() < 1e-12
    assert torch.allclose(coeffs[..., kept], dct2(x)[..., kept], atol=1e-12)
    assert torch.allclose(low_pass(x, 8, "square"), x, atol=1e-12)  # full band is the identity


def test_low_pass_rejects_bad_parameters():
    with pytest.raises(ConfigError, match="bandwidth must be >= 1"):
        low_pass_mask(4, 4, 0)
    with pytest.raises(ConfigError, match="rows, square, triangle"):
        low_pass_mask(4, 4, 2, "circle")


# --------------------------------------------------------------------------- injections
def test_at_least_eight_injections_are_registered(pm):
    names = set(pm.registry.names("injections"))
    assert {
        "none",
        "low-freq",
        "high-freq",
        "random",
        "perp",
        "low-freq-sub",
        "high-freq-sub",
        "random-sub",
        "perp-sub",
        "low-freq-pm",
        "low-pass",
    } <= names


@pytest.mark.parametrize(
    "name, sign",
    [
        ("low-freq", 1),
        ("high-freq", 1),
        ("random", 1),
        ("low-freq-pm", 1),
        ("low-freq-sub", -1),
        ("high-freq-sub", -1),
        ("random-sub", -1),
        ("low-freq-pm-sub", -1),
    ],
)
@pytest.mark.parametrize("shape", [(3, 8, 8), (1, 7, 5)])
def test_additive_and_subtractive_injections_move_by_exactly_beta_without_clamp(pm, name, sign, shape):
    beta = 12 / 255
    inj, x, y = make(pm, name, shape, 6, beta)
    out = inj.apply(x, y)
    assert torch.allclose(out - x, sign * beta * inj.carriers[y], atol=1e-7)
    assert torch.allclose((out - x).abs(), torch.full_like(x, beta), atol=1e-7)
    assert out.max() > 1 or out.min() < 0  # no clamp after injection, as in the paper's code


def test_carrier_injections_match_their_carrier_functions(pm):
    shape, k = (3, 8, 8), 6
    assert torch.equal(make(pm, "low-freq", shape, k)[0].carriers, dct_carriers(k, shape, band="low"))
    assert torch.equal(make(pm, "high-freq", shape, k)[0].carriers, dct_carriers(k, shape, band="high"))
    assert torch.equal(make(pm, "random", shape, k, seed=5)[0].carriers, random_carriers(k, shape, 5))
    assert torch.equal(make(pm, "low-freq-pm", shape, k)[0].carriers, pm_carriers(k, shape))


@pytest.mark.parametrize("carrier", ["low-freq", "low-freq-pm", "random", "high-freq"])
@pytest.mark.parametrize("name, sign", [("perp", 1), ("perp-sub", -1)])
@pytest.mark.parametrize("projection", ["qr", "svd"])
def test_perp_projects_out_every_carrier_then_injects(pm, carrier, name, sign, projection):
    shape, k, beta = (3, 8, 8), 10, 8 / 255
    inj, x, y = make(pm, name, shape, k, beta, n=40, carrier=carrier, projection=projection)
    out = inj.apply(x, y)
    v = inj.carriers.flatten(1).double()
    projected = (out - sign * beta * inj.carriers[y]).flatten(1).double()
    assert (projected @ v.T).abs().max() < 1e-4  # zero inner product with every carrier
    # and nothing else changed: x - projected lies in span(V) (svd), in span(Q) (qr: the reference's
    # K columns, which for the rank-K/2 +-carriers include K/2 arbitrary extra directions)
    q = orthonormal_basis(inj.carriers) if projection == "svd" else inj.basis.double()
    resid = x.flatten(1).double() - projected
    assert torch.allclose(resid, resid @ q @ q.T, atol=1e-5)
    # the injected data's component along each carrier is exactly the injected feature
    expected = sign * beta * (inj.carriers[y].flatten(1).double() @ v.T)
    assert torch.allclose(out.flatten(1).double() @ v.T, expected, atol=1e-3)


def reference_create_linf_carrier():
    """co_features data/injection.py ``create_linf_carrier`` (idct_2d of a one-hot: our orthonormal
    idct2 up to a positive factor per frequency, so the signs are the same)."""
    V = torch.zeros([10, 3, 32, 32])
    for c, (u, v) in enumerate(PAPER_PM_FREQUENCIES):
        V[c, :, u, v] = 1.0
        V[c + 5, :, u, v] = -1.0
    V = torch.sign(idct2(V.view([-1, 32, 32]).double()).float())
    return V.reshape([-1, 3, 32, 32])


def reference_inject_perp_feature(x, y, epsilon, V):
    """co_features data/injection.py ``inject_perp_feature`` without the DataLoader."""
    num_classes = V.shape[0]
    Q, _ = torch.linalg.qr(V.reshape([num_classes, -1]).T)
    P = Q.matmul(Q.T)
    x_proj = P.matmul(x.view([-1, 3072]).T)
    x_poison = x - x_proj.T.view([-1, 3, 32, 32])
    for t in range(num_classes):
        x_poison[y == t] += epsilon * V[t]
    return x_poison


def test_perp_matches_the_reference_inject_perp_feature(pm):
    assert pm.registry.get("injections", "perp").parameters()["carrier"] == "low-freq-pm"  # the paper's
    inj, x, y = make(pm, "perp", (3, 32, 32), 10, beta=8 / 255, n=40)
    assert torch.equal(inj.carriers, reference_create_linf_carrier())
    expected = reference_inject_perp_feature(x.clone(), y, 8 / 255, reference_create_linf_carrier())
    torch.testing.assert_close(inj.apply(x, y), expected, rtol=0, atol=2e-5)
    # the QR basis removes K = 10 directions although the +-carriers span 5: as the reference
    assert inj.basis.shape == (3072, 10)
    svd = make(pm, "perp", (3, 32, 32), 10, beta=8 / 255, n=40, projection="svd")[0]
    assert svd.basis.shape == (3072, 5)
    assert not torch.allclose(svd.apply(x, y), expected, atol=1e-3)


def test_perp_rejects_unknown_carriers(pm):
    with pytest.raises(ConfigError, match="valid carriers: low-freq, high-freq, low-freq-pm, random"):
        pm.registry.get("injections", "perp")(carrier="pink")
    with pytest.raises(ConfigError, match="valid projections: qr, svd"):
        pm.registry.get("injections", "perp")(projection="lu")


@pytest.mark.parametrize("shape_name", ["rows", "square", "triangle"])
def test_low_pass_filters_what_the_model_sees_each_channel_like_an_explicit_dct(pm, shape_name):
    inj, x, y = make(pm, "low-pass", (3, 6, 5), 4, bandwidth=2, shape=shape_name)
    assert torch.equal(inj.apply(x, y), x)  # the data stay unfiltered...
    out = inj.wrap_model(torch.nn.Identity())(x)  # ...the model filters its input, so attacks are filtered too
    mask = low_pass_mask(6, 5, 2, shape_name)
    d_h, d_w = dct_matrix(6), dct_matrix(5)
    for i, c in [(0, 0), (7, 2)]:
        coeffs = explicit_dct2(x[i, c].double())
        expected = d_h.T @ (coeffs * mask) @ d_w
        assert torch.allclose(out[i, c].double(), expected, atol=1e-5)
    assert inj.carriers is None  # a transform, not a class-wise feature: beta is ignored


def reference_dct_low_pass(x, bandwidth):
    """co_features utils.py ``dct_low_pass`` (as ``DCTLowPasser`` calls it on an (N, C, H, W) batch)."""
    if len(x.size()) == 2:
        x.unsqueeze_(0)
    mask = torch.zeros_like(x)
    mask[:, :bandwidth, :bandwidth] = 1
    return idct2(dct2(x) * mask).squeeze_()  # their dct_2d/idct_2d with norm="ortho" = our orthonormal dct2


class ReferenceDCTLowPasser(torch.nn.Module):
    """co_features utils.py ``DCTLowPasser``, inside ``Normalizer`` as low_pass_fgsm_train.py composes them."""

    def __init__(self, module, bandwidth, mean, std):
        super().__init__()
        self.module, self.bandwidth, self.mean, self.std = module, bandwidth, mean, std

    def forward(self, x):
        x = (x - self.mean) / self.std  # Normalizer first...
        return self.module(reference_dct_low_pass(x, self.bandwidth))  # ...then DCTLowPasser


@pytest.mark.parametrize("bandwidth", [3, 5])
def test_low_pass_model_matches_the_reference_composition(pm, bandwidth):
    from cobench.run.training import Normalize

    mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    inj, x, y = make(pm, "low-pass", (3, 8, 8), 4, bandwidth=bandwidth)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(4))
    ours = inj.wrap_model(torch.nn.Sequential(Normalize(mean, std), net))
    m, s = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)
    reference = ReferenceDCTLowPasser(net, bandwidth, m, s)
    torch.testing.assert_close(ours(x), reference(x), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(net(x), ours(x), atol=1e-3)  # the filter does something


def test_low_pass_trains_without_a_box_clamp_unless_asked(pm):
    cls = pm.registry.get("injections", "low-pass")
    assert cls().train_bounds() == (-math.inf, math.inf)  # the reference config's clip_box: False
    assert cls(clip_box=True).train_bounds() == (0.0, 1.0)
    assert pm.registry.get("injections", "none")().train_bounds() == (0.0, 1.0)


def test_low_pass_cell_trains_unclamped_fgsm_through_the_filter(pm):
    from cobench.attacks import fgsm
    from cobench.grid.resolve import resolve
    from cobench.grid.spec import GridSpec
    from cobench.run.cell_worker import execute_cell

    spec = GridSpec(methods=["fgsm"], eps=[16], injections=["low-pass"], evaluators=["clean"])
    spec.override(epochs=1, batch_size=64, probe_size=8)
    spec.set_param("injections.low-pass.bandwidth=3")
    spec.set_param("models.small-cnn.width=4")
    spec.set_param("datasets.digits.test_fraction=0.9")
    (cell,) = resolve(spec, pm.registry)
    assert cell.injection.config() == {
        "name": "low-pass",
        "params": {"bandwidth": 3, "shape": "rows", "clip_box": False},
    }
    result = execute_cell(cell.config(), {"device": "cpu"})
    assert result["status"] == "ok", result.get("error")
    # FGSM-AT under the injection's bounds leaves the box where the gradient says so
    inj, x, y = make(pm, "low-pass", (1, 8, 8), 3, bandwidth=3)
    x[:4] = 0.0
    torch.manual_seed(0)
    model = inj.wrap_model(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3)))
    lower, upper = inj.train_bounds()
    delta = fgsm(model, x, y, 16 / 255, lower=lower, upper=upper)
    assert ((x + delta) < 0).any()
    assert delta.abs().max() <= 16 / 255 + 1e-7


def test_low_pass_injection_rejects_bad_bandwidth(pm):
    with pytest.raises(ConfigError, match="bandwidth must be an integer >= 1"):
        pm.registry.get("injections", "low-pass")(bandwidth=0)


def test_injection_with_too_many_classes_fails_the_cell_with_a_clear_message(pm, tmp_path):
    import numpy as np

    from cobench.grid.spec import GridSpec
    from cobench.run.cell_worker import execute_cell

    rng = np.random.default_rng(0)
    path = tmp_path / "tiny.npz"
    # 5x5 (cobench takes 4x4 and up): 24 non-DC frequencies for 25 classes
    np.savez(
        path,
        x_train=rng.integers(0, 256, (50, 5, 5, 1), dtype=np.uint8),
        y_train=np.arange(50) % 25,
        x_test=rng.integers(0, 256, (25, 5, 5, 1), dtype=np.uint8),
        y_test=np.arange(25),
    )
    spec = GridSpec(
        datasets=[f"npz:{path}"], methods=["fgsm"], eps=[8], injections=["low-freq"], betas=[8], evaluators=["clean"]
    )
    spec.override(epochs=1, batch_size=8)
    (cell,) = resolve(spec, pm.registry)
    result = execute_cell(cell.config(), {"device": "cpu"})
    assert result["status"] == "failed"
    assert "5x5 image has only 24 DCT frequencies for 25 classes" in result["error"]["message"]


def test_cobench_list_injections_shows_them_all_with_readable_descriptions(pm):
    import json

    from tests.conftest import cli_run

    rows = json.loads(cli_run(["list", "injections", "--json"]).output)
    assert len(rows) >= 8
    out = cli_run(["list", "injections"]).output
    assert "perp-sub" in out and "low-pass" in out
    assert "V[y]" in out  # square brackets in descriptions are text, not rich markup
