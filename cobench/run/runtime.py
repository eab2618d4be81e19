"""One cell's runtime: the facts its worker settles once (eps and beta in pixel units, the device,
the seed, the placed data, the prepared injection, the injected test set) and that training and
evaluation both read, so that neither takes them from the other's context; and the cell's parts
(model, method, evaluators) built around it."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cobench.api import DataSplits, EvalContext, Evaluator, Injection, Method


@dataclass(frozen=True)
class CellRuntime:
    """What one cell trains and is evaluated with, fixed before the first step.

    ``data`` holds the training split (on the device, or on the host: ``train_data``) and the
    clean test split on the device; ``test_x`` is that test split with the injection applied.
    ``beta`` is None only for parts assembled by hand around an :class:`EvalContext`, which does
    not carry it (:meth:`around`)."""

    eps: float  # L-inf radius of attacks, pixel units (cell eps / 255)
    beta: float | None  # injection strength, pixel units (cell beta / 255)
    seed: int
    device: torch.device
    data: DataSplits
    injection: Injection  # prepared
    test_x: Tensor  # the test images, injected
    eval_batch_size: int
    #: the first ``probe_size`` test images are the evaluators' per-epoch probe batch
    probe_size: int
    #: where the training set is: "device", or "host" when it exceeds the data budget (minibatches
    #: are then copied to the device; :mod:`cobench.run.placement`)
    train_data: str = "device"

    @property
    def num_classes(self) -> int:
        return self.data.num_classes

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.data.image_shape

    def eval_context(self) -> EvalContext:
        """The evaluators' view of this runtime (the plugin API's :class:`EvalContext`)."""
        probe = min(self.probe_size, len(self.test_x))
        return EvalContext(
            eps=self.eps,
            test_x=self.test_x,
            test_y=self.data.test_y,
            clean_test_x=self.data.test_x,
            injection=self.injection,
            num_classes=self.num_classes,
            device=self.device,
            batch_size=self.eval_batch_size,
            seed=self.seed,
            probe_x=self.test_x[:probe],
            probe_y=self.data.test_y[:probe],
        )

    @classmethod
    def around(
        cls, ctx: EvalContext, data: DataSplits, injection: Injection, train_data: str = "device"
    ) -> CellRuntime:
        """The runtime of parts assembled by hand (step-parity tests, benchmarks) around an
        evaluation context that already says the cell's eps, seed and device."""
        return cls(
            eps=ctx.eps,
            beta=None,
            seed=ctx.seed,
            device=ctx.device,
            data=data,
            injection=injection,
            test_x=ctx.test_x,
            eval_batch_size=ctx.batch_size,
            probe_size=len(ctx.probe_x),
            train_data=train_data,
        )


class CellParts:
    """The built components of one cell, ready to train: the model (normalisation first), the
    method, the evaluators and their context, around the cell's runtime
    (:class:`~cobench.run.runtime.CellRuntime`: eps, seed, device, data, injection), which
    training reads.

    The worker passes ``runtime`` and the evaluators' context is built from it. Parts assembled by
    hand (step-parity tests, benchmarks) may pass ``eval_ctx``, ``data`` and ``injection`` instead,
    as they did before the runtime existed: the runtime is then read from that context."""

    def __init__(
        self,
        model: nn.Module,
        #: None when built without it (``build_parts(..., with_method=False)``: re-evaluating saved weights)
        method: Method | None,
        evaluators: list[Evaluator],
        runtime: CellRuntime | None = None,
        *,
        eval_ctx: EvalContext | None = None,
        data: DataSplits | None = None,
        injection: Injection | None = None,
        train_data: str = "device",
    ):
        if runtime is None:
            if eval_ctx is None or data is None or injection is None:
                raise TypeError("CellParts needs a runtime, or an eval_ctx with the data and the injection")
            runtime = CellRuntime.around(eval_ctx, data, injection, train_data)
        self.model, self.method, self.evaluators, self.runtime = model, method, evaluators, runtime
        self.eval_ctx = runtime.eval_context() if eval_ctx is None else eval_ctx
