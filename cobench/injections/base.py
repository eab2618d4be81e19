"""Shared base of the class-wise carrier injections ``x + sign * beta * V[y]``."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from cobench.api import Injection, InjectionContext


class CarrierInjection(Injection):
    """Base for ``x + sign * beta * V[y]`` injections; subclasses build ``self.carriers``.

    ``sign`` is +1 for the additive injections and -1 for the subtractive ``*-sub`` variants,
    which inject ``x - beta * V[y]`` (the paper's ``inject_reverse_feature``). No clamp to
    [0, 1] after injection, as in the paper's code.
    """

    sign: ClassVar[float] = 1.0

    def build_carriers(self, ctx: InjectionContext) -> Tensor:
        raise NotImplementedError

    def prepare(self, ctx: InjectionContext, train_x: Tensor, train_y: Tensor) -> None:
        super().prepare(ctx, train_x, train_y)
        self.carriers = self.build_carriers(ctx).to(ctx.device or train_x.device, train_x.dtype)

    def apply(self, x: Tensor, y: Tensor) -> Tensor:
        assert self.carriers is not None, "apply() before prepare()"
        return x + (self.sign * self.ctx.beta) * self.carriers.to(x.device, x.dtype)[y]
