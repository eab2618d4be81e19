"""DCT low-pass filtering of the data (Ortiz-Jimenez, de Jorge et al., TMLR 2023, Sec. 4).

Every channel of every train and test image is replaced by its low-pass version: 2-D DCT,
keep the coefficients (u, v) with u < bandwidth and v < bandwidth (``shape="square"``, as
``dct_low_pass`` in the paper's code) or u + v < bandwidth (``shape="triangle"``), inverse
DCT. Beta is ignored. Note: the paper's ``low_pass_fgsm_train.py`` puts this filter as the
model's first layer, so its attacks are filtered too; as an injection it filters the data
only, and perturbations stay full-band.
"""
from __future__ import annotations

from torch import Tensor

from cobench import hookimpl
from cobench.api import Injection, InjectionContext
from cobench.carriers import LOW_PASS_SHAPES, dct_matrix, low_pass_mask
from cobench.errors import ConfigError


class LowPass(Injection):
    """Low-pass the data: keep DCT coefficients u, v < bandwidth per channel (square band; beta ignored)."""

    name = "low-pass"
    ranges = {"bandwidth": ">= 1"}
    paper = "Ortiz-Jimenez, de Jorge et al., TMLR 2023 (dct_low_pass in their code)"

    def __init__(self, bandwidth: int = 16, shape: str = "square"):
        if shape not in LOW_PASS_SHAPES:
            raise ConfigError(f"low-pass shape must be one of {', '.join(LOW_PASS_SHAPES)}, got {shape!r}")
        if int(bandwidth) != bandwidth or bandwidth < 1:
            raise ConfigError(f"low-pass bandwidth must be an integer >= 1, got {bandwidth!r}")
        self.bandwidth = int(bandwidth)
        self.shape = shape

    def prepare(self, ctx: InjectionContext, train_x: Tensor, train_y: Tensor) -> None:
        super().prepare(ctx, train_x, train_y)
        _, h, w = ctx.image_shape
        dev, dt = train_x.device, train_x.dtype
        self.dh = dct_matrix(h).to(dev, dt)
        self.dw = dct_matrix(w).to(dev, dt)
        self.mask = low_pass_mask(h, w, self.bandwidth, self.shape).to(dev, dt)

    def apply(self, x: Tensor, y: Tensor) -> Tensor:
        dh, dw, mask = (t.to(x.device, x.dtype) for t in (self.dh, self.dw, self.mask))
        return dh.T @ ((dh @ x @ dw.T) * mask) @ dw


@hookimpl
def register_injections(register):
    register(LowPass)
