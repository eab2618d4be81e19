"""The parity tests run in float64.

Sign-based attacks (FGSM, PGD) turn the summation-order noise of a float32 reduction into a
different perturbation whenever a gradient component lies within rounding of zero, and which
components do depends on the CPU's kernels and thread count: a float32 trajectory compared to
1e-5 held on one x86-64 CPU and failed on another. In float64 the rounding is ~1e-16, nine orders
of magnitude below the tolerances, so the comparisons prove the same arithmetic on any CPU.
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)
