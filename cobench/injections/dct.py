"""Class-wise DCT-sign injections of Ortiz-Jimenez, de Jorge et al. (TMLR 2023).

``low-freq``/``high-freq`` use the K lowest/highest non-DC frequencies in zig-zag order, one
DCT coefficient per class: cobench's carriers. ``low-freq`` is modelled on
``create_general_linf_carrier`` of the paper's ``data/injection.py`` (which none of its training
scripts calls) but is not what that function computes: its ``matrix[:, j] = 1.0`` with the tuple
``j = (u, v)`` sets two whole rows of coefficients, not the coefficient (u, v), so its carriers
differ from these in about half of the pixels (docs/fidelity.md). ``low-freq-pm`` is the carrier
of every CIFAR-10 experiment in the paper's code (``create_linf_carrier``: 5 frequencies,
classes c and c+5 get opposite signs). The ``-sub`` variants inject ``x - beta * V[y]``.
"""

from __future__ import annotations

from torch import Tensor

from cobench import hookimpl
from cobench.api import InjectionContext
from cobench.injections.base import CarrierInjection
from cobench.injections.carriers import dct_carriers, pm_carriers

PAPER = "Ortiz-Jimenez, de Jorge, Sanyal, Bibi, Dokania, Frossard, Rogez & Torr, TMLR 2023"
#: the strength co_features' injected-feature scripts run at without arguments
#: (config/injected_feature_cifar_{fgsm,nfgsm,gradalign,pgd}_train/config.yaml: ``beta: 8``, /255)
REFERENCE_BETA = 8.0
REFERENCE_BETA_SOURCE = "co_features' configs (config/injected_feature_cifar_*_train/config.yaml: beta: 8)"

__all__ = [
    "CarrierInjection",
    "DCTInjection",
    "LowFrequency",
    "HighFrequency",
    "LowFrequencySub",
    "HighFrequencySub",
    "LowFrequencyPM",
    "LowFrequencyPMSub",
]


class DCTInjection(CarrierInjection):
    """The paper's DCT-sign carriers: without a beta they run at its configs' ``beta: 8``."""

    default_beta = REFERENCE_BETA
    default_beta_source = REFERENCE_BETA_SOURCE


class LowFrequency(DCTInjection):
    """x + beta * V[y], V[c] = sign of the c-th lowest-frequency 2-D DCT basis (zig-zag order)."""

    name = "low-freq"
    paper = PAPER

    def __init__(self, skip_dc: bool = True):
        self.skip_dc = skip_dc

    def build_carriers(self, ctx: InjectionContext) -> Tensor:
        return dct_carriers(ctx.num_classes, ctx.image_shape, band="low", skip_dc=self.skip_dc)


class HighFrequency(DCTInjection):
    """x + beta * V[y], V[c] = sign of the c-th highest-frequency 2-D DCT basis (zig-zag order from the top)."""

    name = "high-freq"
    paper = PAPER

    def build_carriers(self, ctx: InjectionContext) -> Tensor:
        return dct_carriers(ctx.num_classes, ctx.image_shape, band="high")


class LowFrequencyPM(DCTInjection):
    """x + beta * V[y] with the paper's CIFAR-10 +-carrier: ceil(K/2) low DCT signs, class c+K/2 gets -V[c]."""

    name = "low-freq-pm"
    paper = PAPER + " (create_linf_carrier in their code)"

    def build_carriers(self, ctx: InjectionContext) -> Tensor:
        return pm_carriers(ctx.num_classes, ctx.image_shape)


class LowFrequencySub(LowFrequency):
    """x - beta * V[y] with the low-freq carriers (subtractive variant)."""

    name = "low-freq-sub"
    sign = -1.0


class HighFrequencySub(HighFrequency):
    """x - beta * V[y] with the high-freq carriers (subtractive variant)."""

    name = "high-freq-sub"
    sign = -1.0


class LowFrequencyPMSub(LowFrequencyPM):
    """x - beta * V[y] with the paper's +-carrier (its inject_reverse_feature)."""

    name = "low-freq-pm-sub"
    sign = -1.0


@hookimpl
def register_injections(register):
    for cls in (LowFrequency, HighFrequency, LowFrequencyPM, LowFrequencySub, HighFrequencySub, LowFrequencyPMSub):
        register(cls)
