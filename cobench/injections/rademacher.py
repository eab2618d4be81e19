"""Random-sign (Rademacher) class-wise injections: a control for the DCT carriers.

Each class gets a fixed +-1 pattern, identical on every channel, drawn from ``seed`` (a
parameter of the injection, not the cell's seed, so every seed of a grid sees the same
carriers). Same L-inf norm as the DCT carriers, but no spatial-frequency structure.
"""

from __future__ import annotations

from torch import Tensor

from cobench import hookimpl
from cobench.api import InjectionContext
from cobench.injections.base import CarrierInjection
from cobench.injections.carriers import random_carriers


class RandomSign(CarrierInjection):
    """x + beta * V[y], V[c] a fixed random +-1 pattern per class (seeded, same on every channel)."""

    name = "random"
    paper = "control for Ortiz-Jimenez, de Jorge et al., TMLR 2023"

    def __init__(self, seed: int = 0):
        self.seed = seed

    def build_carriers(self, ctx: InjectionContext) -> Tensor:
        return random_carriers(ctx.num_classes, ctx.image_shape, self.seed)


class RandomSignSub(RandomSign):
    """x - beta * V[y] with the random +-1 carriers (subtractive variant)."""

    name = "random-sub"
    sign = -1.0


@hookimpl
def register_injections(register):
    register(RandomSign)
    register(RandomSignSub)
