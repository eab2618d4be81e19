"""The identity injection: the unmodified dataset."""

from __future__ import annotations

from torch import Tensor

from cobench import hookimpl
from cobench.api import NO_INJECTION, Injection


class NoInjection(Injection):
    """No injection: images are left unchanged (beta is ignored)."""

    name = NO_INJECTION
    uses_beta = False

    def apply(self, x: Tensor, y: Tensor) -> Tensor:
        return x


@hookimpl
def register_injections(register):
    register(NoInjection)
