"""Class-wise carrier patterns: signs of 2-D DCT basis functions, and random signs.

The paper injects ``x + beta * V[y]`` with ``V[c] = sign(DCT basis_c)`` copied to every
channel, so ``||V[c]||_inf = 1``. Frequencies are taken in JPEG zig-zag order so "low"
and "high" mean the same for any image size.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


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
    num_classes: int, image_shape: tuple[int, int, int], *, band: str = "low", skip_dc: bool = True,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """One sign-of-DCT carrier per class, shape (K, C, H, W), identical on every channel.

    ``band="low"`` takes the first K frequencies in zig-zag order (after the constant DC
    term when ``skip_dc``), ``band="high"`` the last K.
    """
    c, h, w = image_shape
    freqs = zigzag(h, w)
    if skip_dc:
        freqs = freqs[1:]
    if num_classes > len(freqs):
        raise ValueError(f"an {h}x{w} image has only {len(freqs)} DCT frequencies for {num_classes} classes")
    chosen = freqs[:num_classes] if band == "low" else freqs[::-1][:num_classes]
    pats = torch.stack([sign_pattern(dct_basis(h, w, u, v)) for u, v in chosen])
    return pats[:, None].expand(num_classes, c, h, w).to(dtype).contiguous()


def random_carriers(num_classes: int, image_shape: tuple[int, int, int], seed: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Fixed Rademacher (+-1) patterns per class, identical on every channel, from ``seed``."""
    c, h, w = image_shape
    g = torch.Generator().manual_seed(seed)
    pats = torch.randint(0, 2, (num_classes, 1, h, w), generator=g).to(dtype) * 2 - 1
    return pats.expand(num_classes, c, h, w).contiguous()
