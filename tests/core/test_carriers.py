"""The low-frequency carriers and the injection x + beta * V[y]."""

from __future__ import annotations

import torch

from cobench.api import InjectionContext
from cobench.injections.carriers import dct_basis, dct_carriers, dct_matrix, zigzag
from cobench.injections.dct import LowFrequency


def test_dct_matrix_is_orthonormal():
    for n in (8, 16, 32, 7):
        d = dct_matrix(n)
        assert torch.allclose(d @ d.T, torch.eye(n, dtype=d.dtype), atol=1e-12)


def test_2d_basis_images_are_orthonormal():
    h, w = 8, 6
    basis = torch.stack([dct_basis(h, w, u, v).flatten() for u, v in zigzag(h, w)])
    assert torch.allclose(basis @ basis.T, torch.eye(h * w, dtype=basis.dtype), atol=1e-12)


def test_zigzag_starts_like_jpeg_and_covers_everything():
    order = zigzag(8, 8)
    assert order[:6] == [(0, 0), (0, 1), (1, 0), (2, 0), (1, 1), (0, 2)]
    assert sorted(order) == [(u, v) for u in range(8) for v in range(8)]
    assert len(zigzag(5, 3)) == 15


def test_low_freq_carriers_are_sign_patterns_with_unit_inf_norm():
    v = dct_carriers(10, (3, 32, 32))
    assert v.shape == (10, 3, 32, 32)
    assert set(v.unique().tolist()) == {-1.0, 1.0}
    assert torch.all(v.flatten(1).abs().amax(1) == 1)
    assert torch.equal(v[:, 0], v[:, 1]) and torch.equal(v[:, 1], v[:, 2])  # same on every channel
    assert len({tuple(c.flatten().tolist()) for c in v}) == 10  # one distinct pattern per class
    # V[c] is the sign of the c-th non-DC zig-zag basis: it correlates positively with it
    for c, (u, s) in enumerate(zigzag(32, 32)[1:11]):
        basis = dct_basis(32, 32, u, s).float()
        assert (v[c, 0] * basis).sum() > 0
        assert torch.equal(v[c, 0], torch.where(basis >= 0, 1.0, -1.0)) or (basis.abs() < 1e-9).any()


def test_low_freq_sign_carriers_are_nearly_orthogonal_for_power_of_two_sizes():
    v = dct_carriers(10, (1, 32, 32)).flatten(1)
    gram = v @ v.T / v.shape[1]
    assert torch.allclose(gram.diagonal(), torch.ones(10))
    assert gram.fill_diagonal_(0).abs().max() <= 0.5
    # linearly independent: the projection used by orthogonal injections is well defined
    assert torch.linalg.matrix_rank(v) == 10


def test_odd_sizes_never_produce_zero_entries():
    v = dct_carriers(12, (1, 9, 9))
    assert set(v.unique().tolist()) == {-1.0, 1.0}


def test_injection_adds_beta_times_class_carrier_without_clamping():
    inj = LowFrequency()
    x = torch.rand(20, 3, 16, 16)
    y = torch.arange(20) % 10
    beta = 8 / 255
    inj.prepare(InjectionContext(beta=beta, num_classes=10, image_shape=(3, 16, 16), seed=0), x, y)
    out = inj.apply(x, y)
    assert torch.allclose(out - x, beta * inj.carriers[y])
    assert torch.allclose((out - x).abs(), torch.full_like(x, beta))
    assert out.max() > 1 or out.min() < 0  # no clamp after injection, as in the paper's code


def test_too_many_classes_for_the_image_is_a_clear_error():
    import pytest

    with pytest.raises(ValueError, match="only 3 DCT frequencies for 5 classes"):
        dct_carriers(5, (1, 2, 2))
