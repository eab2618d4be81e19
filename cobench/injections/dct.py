"""Class-wise DCT-sign injections of Ortiz-Jimenez, de Jorge et al. (TMLR 2023)."""
from __future__ import annotations

from torch import Tensor

from cobench import hookimpl
from cobench.api import Injection, InjectionContext
from cobench.carriers import dct_carriers


class CarrierInjection(Injection):
    """Base for ``x + beta * V[y]`` injections; subclasses build ``self.carriers``."""

    def build_carriers(self, ctx: InjectionContext) -> Tensor:
        raise NotImplementedError

    def prepare(self, ctx: InjectionContext, train_x: Tensor, train_y: Tensor) -> None:
        super().prepare(ctx, train_x, train_y)
        self.carriers = self.build_carriers(ctx).to(train_x.device, train_x.dtype)

    def apply(self, x: Tensor, y: Tensor) -> Tensor:
        # no clamp after injection, as in the paper's code
        return x + self.ctx.beta * self.carriers.to(x.device, x.dtype)[y]


class LowFrequency(CarrierInjection):
    """x + beta * V[y], V[c] = sign of the c-th lowest-frequency 2-D DCT basis (zig-zag order)."""

    name = "low-freq"
    paper = "Ortiz-Jimenez, de Jorge, Sanyal, Bibi, Dokania, Frossard, Rogez & Torr, TMLR 2023"

    def __init__(self, skip_dc: bool = True):
        self.skip_dc = skip_dc

    def build_carriers(self, ctx: InjectionContext) -> Tensor:
        return dct_carriers(ctx.num_classes, ctx.image_shape, band="low", skip_dc=self.skip_dc)


@hookimpl
def register_injections(register):
    register(LowFrequency)
