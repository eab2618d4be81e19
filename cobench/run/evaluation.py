"""Calling evaluators: the one place that does it, for the per-epoch probes and the final
evaluation alike, with one rule for metrics reported twice."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar

import torch
from torch import nn

from cobench.api import Evaluator
from cobench.errors import CobenchError
from cobench.run.device import true_fp32

V = TypeVar("V")

#: who reported the numbers that are already in a record before the evaluators run
TRAINING_LOOP = "the training loop"


@contextlib.contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode and true fp32 (autocast off, no TF32 or bf16 inside fp32 ops) for every evaluator
    call; restores the previous mode and precision settings."""
    was_training = model.training
    model.eval()
    try:
        with torch.autocast(device_type=next(model.parameters()).device.type, enabled=False), true_fp32():
            yield
    finally:
        model.train(was_training)


def run_evaluators(
    model: nn.Module,
    evaluators: list[Evaluator],
    measure: Callable[[Evaluator], Mapping[str, V] | None],
    reported: Mapping[str, V] | None = None,
) -> dict[str, V]:
    """``reported`` plus what ``measure(evaluator)`` returns for each evaluator, called in
    :func:`evaluation_mode`. A metric name may be reported once: a second report is an error
    naming both reporters. The values are what the evaluators return: per-epoch probes are numbers
    (:meth:`Evaluator.on_epoch_end`), final metrics whatever :meth:`Evaluator.evaluate` gives."""
    metrics: dict[str, V] = dict(reported or {})
    owners = dict.fromkeys(metrics, TRAINING_LOOP)
    with evaluation_mode(model):
        for evaluator in evaluators:
            try:
                produced = measure(evaluator) or {}
            except CobenchError:
                raise
            except Exception as exc:
                raise CobenchError(f"evaluator {evaluator.name!r} raised {type(exc).__name__}: {exc}") from exc
            bad = {
                k: v
                for k, v in produced.items()
                if k.endswith("_acc")
                and isinstance(v, (int, float))
                and not isinstance(v, bool)
                and not 0.0 <= v <= 1.0
            }
            if bad:
                raise CobenchError(
                    f"evaluator {evaluator.name!r} reported accuracy outside [0, 1]: "
                    + ", ".join(f"{k}={v!r}" for k, v in bad.items())
                )
            clash = sorted(set(produced) & set(metrics))
            if clash:
                raise CobenchError(
                    f"evaluator {evaluator.name!r} reports metric(s) {clash} already reported by {owners[clash[0]]!r}"
                )
            metrics.update(produced)
            owners.update(dict.fromkeys(produced, evaluator.name))
    return metrics
