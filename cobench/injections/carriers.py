"""Class-wise carrier patterns (signs of 2-D DCT basis functions, random signs), the
projection onto their orthogonal complement, and DCT low-pass filtering.

The paper injects ``x + beta * V[y]`` with ``V[c] = sign(DCT basis_c)`` copied to every
channel, so ``||V[c]||_inf = 1``. Frequencies are taken in JPEG zig-zag order so "low"
and "high" mean the same for any image size. A frequency (u, v) is the row frequency u
and the column frequency v, as ``idct_2d`` of a one-hot at [u, v] in the paper's code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from cobench.errors import ConfigError


class CarrierError(ConfigError, ValueError):
    """Carriers cannot be built for this image shape and number of classes."""


def dct_matrix(n: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """Orthonormal DCT-II matrix ``D`` (rows are basis vectors): ``D @ D.T = I``."""
    i = torch.arange(n, dtype=dtype)
    k = i[:, None]
    d = torch.cos(math.pi * (2 * i[None, :] + 1) * k / (2 * n))
    d[0] *= 1 / math.sqrt(n)
    d[1:] *= math.sqrt(2 / n)
    return d


def dct_basis(h: int, w: int, u: int, v: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """The (u, v) 2-D DCT-II basis image of size (h, w), unit L2 norm."""
    return torch.outer(dct_matrix(h, dtype)[u], dct_matrix(w, dtype)[v])


def zigzag(h: int, w: int) -> list[tuple[int, int]]:
    """All (u, v) frequency pairs of an h x w DCT in JPEG zig-zag order, lowest first."""
    order = sorted(
        ((u, v) for u in range(h) for v in range(w)),
        key=lambda uv: (uv[0] + uv[1], uv[1] if (uv[0] + uv[1]) % 2 == 0 else uv[0]),
    )
    return order


def sign_pattern(basis: Tensor) -> Tensor:
    """Sign of a basis image, with exact (numerical) zeros sent to +1 so ``|V| = 1`` everywhere."""
    s = torch.sign(basis)
    s[basis.abs() < 1e-9] = 1.0
    return s


def dct_carriers(
    num_classes: int,
    image_shape: tuple[int, int, int],
    *,
    band: str = "low",
    skip_dc: bool = True,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """One sign-of-DCT carrier per class, shape (K, C, H, W), identical on every channel.

    ``band="low"`` takes the first K frequencies in zig-zag order (after the constant DC
    term when ``skip_dc``), ``band="high"`` the last K.
    """
    if band not in ("low", "high"):
        raise ConfigError(f"band must be 'low' or 'high', got {band!r}")
    c, h, w = image_shape
    freqs = zigzag(h, w)
    if skip_dc:
        freqs = freqs[1:]
    if num_classes > len(freqs):
        raise CarrierError(
            f"an {h}x{w} image has only {len(freqs)} DCT frequencies for {num_classes} classes; "
            "use larger images, fewer classes or the 'random' injection"
        )
    chosen = freqs[:num_classes] if band == "low" else freqs[::-1][:num_classes]
    return _sign_carriers(chosen, [1.0] * num_classes, (c, h, w), dtype)


def _sign_carriers(
    freqs: Sequence[tuple[int, int]], signs: Sequence[float], image_shape: tuple[int, int, int], dtype: torch.dtype
) -> Tensor:
    c, h, w = image_shape
    pats = torch.stack([s * sign_pattern(dct_basis(h, w, u, v)) for (u, v), s in zip(freqs, signs)])
    return pats[:, None].expand(len(freqs), c, h, w).to(dtype).contiguous()


#: the five frequencies (row u, column v) of the paper's CIFAR-10 carrier (``create_linf_carrier``
#: in github.com/gortizji/co_features, data/injection.py)
PAPER_PM_FREQUENCIES: tuple[tuple[int, int], ...] = ((0, 1), (1, 0), (1, 1), (2, 1), (1, 2))


def pm_carriers(
    num_classes: int,
    image_shape: tuple[int, int, int],
    *,
    frequencies: Sequence[tuple[int, int]] = PAPER_PM_FREQUENCIES,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """The paper's +-carriers: m = ceil(K/2) DCT sign patterns, class c < m gets ``+V_c`` and
    class c + m gets ``-V_c``.

    With K = 10 and the default ``frequencies`` this is exactly the carrier of the paper's
    CIFAR-10 experiments (classes 0-4: + frequencies (0,1),(1,0),(1,1),(2,1),(1,2); classes
    5-9: their negatives). Frequencies that do not fit the image are dropped and missing ones
    are taken in zig-zag order after the DC term. The carriers span only m dimensions.
    """
    c, h, w = image_shape
    m = math.ceil(num_classes / 2)
    freqs = [(u, v) for u, v in frequencies if u < h and v < w and (u, v) != (0, 0)]
    freqs += [f for f in zigzag(h, w)[1:] if f not in freqs]
    if m > len(freqs):
        raise CarrierError(
            f"an {h}x{w} image has only {len(freqs)} DCT frequencies for the {m} +- pairs of {num_classes} classes; "
            "use larger images, fewer classes or the 'random' injection"
        )
    chosen = [freqs[k % m] for k in range(num_classes)]
    signs = [1.0 if k < m else -1.0 for k in range(num_classes)]
    return _sign_carriers(chosen, signs, (c, h, w), dtype)


def random_carriers(
    num_classes: int, image_shape: tuple[int, int, int], seed: int, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Fixed Rademacher (+-1) patterns per class, identical on every channel, from ``seed``."""
    c, h, w = image_shape
    g = torch.Generator().manual_seed(seed)
    pats = torch.randint(0, 2, (num_classes, 1, h, w), generator=g).to(dtype) * 2 - 1
    return pats.expand(num_classes, c, h, w).contiguous()


CARRIER_KINDS = ("low-freq", "high-freq", "low-freq-pm", "random")


def named_carriers(kind: str, num_classes: int, image_shape: tuple[int, int, int], seed: int = 0) -> Tensor:
    """Carriers by name, as the injections of the same name build them."""
    if kind == "low-freq":
        return dct_carriers(num_classes, image_shape, band="low")
    if kind == "high-freq":
        return dct_carriers(num_classes, image_shape, band="high")
    if kind == "low-freq-pm":
        return pm_carriers(num_classes, image_shape)
    if kind == "random":
        return random_carriers(num_classes, image_shape, seed)
    raise ConfigError(f"unknown carrier {kind!r}; valid carriers: {', '.join(CARRIER_KINDS)}")


# --------------------------------------------------------------------------- projections
def orthonormal_basis(vectors: Tensor, rtol: float = 1e-6) -> Tensor:
    """Orthonormal basis (d, r) of the span of the rows of ``vectors`` (K, d), in float64.

    An SVD, so it is right when the rows are not orthogonal and when they are linearly
    dependent (the +- carriers span only K/2 dimensions): r is the numerical rank.
    """
    a = vectors.reshape(len(vectors), -1).to(torch.float64)
    u, s, _ = torch.linalg.svd(a.T, full_matrices=False)
    if s.numel() == 0 or s[0] == 0:
        return u[:, :0]
    return u[:, s > rtol * s[0]]


def qr_basis(vectors: Tensor) -> Tensor:
    """Q of the reduced QR of the carrier matrix (d, K), as ``inject_perp_feature`` in the paper's
    code builds it (``torch.linalg.qr(V.reshape([K, -1]).T)``), in the carriers' dtype.

    Q always has K orthonormal columns. When the carriers are linearly dependent (the +-carriers
    span K/2 dimensions) the columns beyond the rank are directions orthogonal to span(V) fixed
    by rounding noise: projecting them out removes K - rank extra, arbitrary directions, and
    which ones depends on the LAPACK build and device.
    """
    q, _ = torch.linalg.qr(vectors.reshape(len(vectors), -1).T)
    return q


PROJECTIONS = ("qr", "svd")


def project_out(x: Tensor, basis: Tensor) -> Tensor:
    """``x - Q Q^T x`` for each sample of ``x`` (N, ...): the part orthogonal to span(Q)."""
    flat = x.reshape(len(x), -1)
    q = basis.to(flat.device, flat.dtype)
    return (flat - (flat @ q) @ q.T).reshape(x.shape)


# --------------------------------------------------------------------------- 2-D DCT filtering
def dct2(x: Tensor) -> Tensor:
    """Orthonormal 2-D DCT-II over the last two dimensions: ``D_h x D_w^T``."""
    dh = dct_matrix(x.shape[-2], torch.float64).to(x.device, x.dtype)
    dw = dct_matrix(x.shape[-1], torch.float64).to(x.device, x.dtype)
    return dh @ x @ dw.T


def idct2(coeffs: Tensor) -> Tensor:
    """Inverse of :func:`dct2`: ``D_h^T X D_w``."""
    dh = dct_matrix(coeffs.shape[-2], torch.float64).to(coeffs.device, coeffs.dtype)
    dw = dct_matrix(coeffs.shape[-1], torch.float64).to(coeffs.device, coeffs.dtype)
    return dh.T @ coeffs @ dw


LOW_PASS_SHAPES = ("rows", "square", "triangle")


def low_pass_mask(h: int, w: int, bandwidth: int, shape: str = "square") -> Tensor:
    """Which DCT coefficients (u, v) a low-pass filter keeps, as a 0/1 (h, w) float64 mask.

    ``rows`` keeps u < bandwidth for every v: what ``dct_low_pass`` in the paper's code
    (github.com/gortizji/co_features, utils.py) computes on the 4-D batches its
    ``DCTLowPasser`` receives (its ``mask[:, :bandwidth, :bandwidth]`` indexes the channel and
    row axes of an (N, C, H, W) tensor). ``square`` keeps u < bandwidth and v < bandwidth, what
    the same function computes on a single (C, H, W) image and the paper describes;
    ``triangle`` keeps u + v < bandwidth.
    """
    if shape not in LOW_PASS_SHAPES:
        raise ConfigError(f"low-pass shape must be one of {', '.join(LOW_PASS_SHAPES)}, got {shape!r}")
    if bandwidth < 1:
        raise ConfigError(f"low-pass bandwidth must be >= 1, got {bandwidth}")
    u = torch.arange(h, dtype=torch.float64)[:, None]
    v = torch.arange(w, dtype=torch.float64)[None, :]
    if shape == "rows":
        keep = (u < bandwidth) & (v >= 0)
    elif shape == "square":
        keep = (u < bandwidth) & (v < bandwidth)
    else:
        keep = u + v < bandwidth
    return keep.to(torch.float64)


def low_pass(x: Tensor, bandwidth: int, shape: str = "square") -> Tensor:
    """Keep only the low DCT frequencies of every channel of ``x`` (..., H, W)."""
    mask = low_pass_mask(x.shape[-2], x.shape[-1], bandwidth, shape).to(x.device, x.dtype)
    return idct2(dct2(x) * mask)
