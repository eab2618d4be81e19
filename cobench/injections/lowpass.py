"""DCT low-pass filter as the model's first layer (Ortiz-Jimenez, de Jorge et al., TMLR 2023).

Follows ``low_pass_fgsm_train.py`` / ``low_pass_pgd_train.py`` of gortizji/co_features and their
``config/low_pass_*_train/config.yaml``: the network is wrapped in ``DCTLowPasser`` (``utils.py``),
so every input it sees -- clean, perturbed during training, attacked during evaluation -- is
low-pass filtered first; the data themselves are untouched, and training perturbations are not
clamped to the image box (``clip_box: False``). Per channel: 2-D orthonormal DCT, keep the
coefficients of :func:`cobench.injections.carriers.low_pass_mask`, inverse DCT. Beta is ignored.

Knowingly differs from the reference:

* ``shape="rows"`` (default) keeps the row frequencies u < bandwidth and *all* column
  frequencies, which is what the reference's ``dct_low_pass`` computes on its 4-D batches
  (``mask[:, :bandwidth, :bandwidth]`` indexes channels and rows). For bandwidth < number of
  channels the reference also zeroes the (normalised) channels >= bandwidth; we do not.
  ``shape="square"`` keeps u, v < bandwidth, as the paper describes the filter.
* The reference filters after normalisation, we before it: the same, since the filter is linear
  per channel and keeps the constant (DC) component.
* The reference's PGD training attack clamps its random start to the box (``LinfPGD.init_delta``)
  even with ``clip_box: False``; with ``clip_box=False`` cobench clamps nothing during training.
* The reference also reports PGD accuracy with the filter switched off (``apply_filter = False``);
  cobench has no such metric.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from cobench import hookimpl
from cobench.api import Injection, InjectionContext
from cobench.errors import ConfigError
from cobench.injections.carriers import LOW_PASS_SHAPES, dct_matrix, low_pass_mask


class LowPassFilter(nn.Module):
    """Per-channel DCT low-pass filter of (N, C, H, W) inputs: ``D_h^T ((D_h x D_w^T) * mask) D_w``."""

    dh: Tensor
    dw: Tensor
    mask: Tensor

    def __init__(self, h: int, w: int, bandwidth: int, shape: str):
        super().__init__()
        self.register_buffer("dh", dct_matrix(h).float())
        self.register_buffer("dw", dct_matrix(w).float())
        self.register_buffer("mask", low_pass_mask(h, w, bandwidth, shape).float())

    def forward(self, x: Tensor) -> Tensor:
        dh, dw, mask = (t.to(x.dtype) for t in (self.dh, self.dw, self.mask))
        return dh.T @ ((dh @ x @ dw.T) * mask) @ dw


class LowPassModel(nn.Module):
    """``model(low_pass(x))``: the reference's ``DCTLowPasser`` around the normalised network."""

    def __init__(self, low_pass: LowPassFilter, model: nn.Module):
        super().__init__()
        self.low_pass = low_pass
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(self.low_pass(x))


class LowPass(Injection):
    """Low-pass filter inside the model (attacks filtered too): keep DCT rows u < bandwidth; beta ignored."""

    name = "low-pass"
    ranges = {"bandwidth": ">= 1"}
    paper = "Ortiz-Jimenez, de Jorge et al., TMLR 2023 (DCTLowPasser in low_pass_fgsm_train.py of their code)"
    uses_beta = False

    def __init__(self, bandwidth: int = 16, shape: str = "rows", clip_box: bool = False):
        if shape not in LOW_PASS_SHAPES:
            raise ConfigError(f"low-pass shape must be one of {', '.join(LOW_PASS_SHAPES)}, got {shape!r}")
        if int(bandwidth) != bandwidth or bandwidth < 1:
            raise ConfigError(f"low-pass bandwidth must be an integer >= 1, got {bandwidth!r}")
        self.bandwidth = int(bandwidth)
        self.shape = shape
        self.clip_box = bool(clip_box)  # clamp x + delta to [0, 1] while training (the reference: False)

    def prepare(self, ctx: InjectionContext, train_x: Tensor, train_y: Tensor) -> None:
        super().prepare(ctx, train_x, train_y)
        _, h, w = ctx.image_shape
        self.filter = LowPassFilter(h, w, self.bandwidth, self.shape)

    def apply(self, x: Tensor, y: Tensor) -> Tensor:
        return x  # the data stay unfiltered; the model filters what it sees

    def wrap_model(self, model: nn.Module) -> nn.Module:
        return LowPassModel(self.filter, model)

    def train_bounds(self) -> tuple[float, float]:
        return (0.0, 1.0) if self.clip_box else (-math.inf, math.inf)


@hookimpl
def register_injections(register):
    register(LowPass)
