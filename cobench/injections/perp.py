"""Orthogonal injections: project the data off the carriers' span, then inject.

As the paper's ``inject_perp_feature`` (Ortiz-Jimenez, de Jorge et al., TMLR 2023): every
image x (flattened over channels and pixels) is replaced by ``x - P x``, P the orthogonal
projector onto span{V[0], ..., V[K-1]}, and then ``beta * V[y]`` is added, so the injected
feature is the only information the data has along the carriers. P comes from an SVD of
the carriers, exact even when they are not mutually orthogonal or, like the +-carriers,
linearly dependent (the paper's code takes a QR of the carrier matrix, which for dependent
carriers also removes extra, arbitrary directions).
"""
from __future__ import annotations

from torch import Tensor

from cobench import hookimpl
from cobench.api import InjectionContext
from cobench.carriers import CARRIER_KINDS, named_carriers, orthonormal_basis, project_out
from cobench.errors import ConfigError

from .base import CarrierInjection


class Perpendicular(CarrierInjection):
    """(x - P x) + beta * V[y]: data projected onto the orthogonal complement of span(V), then injected."""

    name = "perp"
    paper = "Ortiz-Jimenez, de Jorge et al., TMLR 2023 (inject_perp_feature in their code)"

    def __init__(self, carrier: str = "low-freq", seed: int = 0):
        if carrier not in CARRIER_KINDS:
            raise ConfigError(f"perp: unknown carrier {carrier!r}; valid carriers: {', '.join(CARRIER_KINDS)}")
        self.carrier = carrier
        self.seed = seed

    def build_carriers(self, ctx: InjectionContext) -> Tensor:
        return named_carriers(self.carrier, ctx.num_classes, ctx.image_shape, self.seed)

    def prepare(self, ctx: InjectionContext, train_x: Tensor, train_y: Tensor) -> None:
        super().prepare(ctx, train_x, train_y)
        self.basis = orthonormal_basis(self.carriers).to(train_x.device, train_x.dtype)

    def apply(self, x: Tensor, y: Tensor) -> Tensor:
        return super().apply(project_out(x, self.basis), y)


class PerpendicularSub(Perpendicular):
    """(x - P x) - beta * V[y] (subtractive variant of perp; the paper's inject_reverse_perp_feature)."""

    name = "perp-sub"
    sign = -1.0


@hookimpl
def register_injections(register):
    register(Perpendicular)
    register(PerpendicularSub)
