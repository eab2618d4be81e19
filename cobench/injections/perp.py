"""Orthogonal injections: project the data off the carriers' span, then inject.

Follows ``inject_perp_feature`` in ``data/injection.py`` of gortizji/co_features, as
``injected_perp_feature_cifar_fgsm_train.py`` uses it (Ortiz-Jimenez, de Jorge et al., TMLR
2023): every image x (flattened over channels and pixels) is replaced by ``x - Q Q^T x``, Q from
the QR decomposition of the carrier matrix, and then ``beta * V[y]`` is added, so the injected
feature is the only information the data has along the carriers. The default carrier is the
paper's +-carrier (``low-freq-pm``, ``create_linf_carrier``).

What remains different: the +-carriers are linearly dependent (rank K/2), so Q's last K/2
columns are directions orthogonal to span(V) picked by rounding noise; the reference removes
them too, but which directions they are depends on the LAPACK build and device, so the
projected data match the reference's exactly only on the same platform (``projection="svd"``
removes exactly span(V) instead). The reference projects the stored, un-augmented dataset once;
cobench applies the injection to each batch after augmentation (the same with augmentation off).
"""

from __future__ import annotations

from torch import Tensor

from cobench import hookimpl
from cobench.api import InjectionContext
from cobench.errors import ConfigError
from cobench.injections.base import CarrierInjection
from cobench.injections.carriers import (
    CARRIER_KINDS,
    PROJECTIONS,
    named_carriers,
    orthonormal_basis,
    project_out,
    qr_basis,
)


class Perpendicular(CarrierInjection):
    """(x - Q Q^T x) + beta * V[y]: data projected off the carriers (QR, as the paper), then injected."""

    name = "perp"
    paper = "Ortiz-Jimenez, de Jorge et al., TMLR 2023 (inject_perp_feature in their code)"
    # no default_beta: the script's hydra config (config/injected_perp_feature_cifar_fgsm_train)
    # is not in the repository (co_features @ff9292f), so its beta has no reference default

    def __init__(self, carrier: str = "low-freq-pm", seed: int = 0, projection: str = "qr"):
        if carrier not in CARRIER_KINDS:
            raise ConfigError(f"perp: unknown carrier {carrier!r}; valid carriers: {', '.join(CARRIER_KINDS)}")
        if projection not in PROJECTIONS:
            raise ConfigError(f"perp: unknown projection {projection!r}; valid projections: {', '.join(PROJECTIONS)}")
        self.carrier = carrier
        self.seed = seed
        self.projection = projection  # "qr": the reference's Q (K columns); "svd": exactly span(V)

    def build_carriers(self, ctx: InjectionContext) -> Tensor:
        return named_carriers(self.carrier, ctx.num_classes, ctx.image_shape, self.seed)

    def prepare(self, ctx: InjectionContext, train_x: Tensor, train_y: Tensor) -> None:
        super().prepare(ctx, train_x, train_y)
        assert self.carriers is not None  # set by CarrierInjection.prepare
        if self.projection == "qr":  # float32 on the CPU, as the reference builds it
            self.basis = qr_basis(self.carriers.float().cpu()).to(self.carriers.device, train_x.dtype)
        else:
            self.basis = orthonormal_basis(self.carriers).to(self.carriers.device, train_x.dtype)

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
