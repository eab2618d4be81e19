"""A synthetic CO oracle as a test plugin: a tiny dataset and linear model, a method that trains one step per epoch and a ``co``
evaluator whose verdict is a known function of (eps, beta, seed), so the boundary search runs
through the real runner and results directory without real training."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import nn

from cobench import hookimpl
from cobench.api import Batch, DataContext, Dataset, DataSplits, EvalContext, Evaluator, Method, Model, StepContext
from cobench.testing import tiny_splits


def oracle_co(eps: float, beta: float, seed: int) -> bool:
    """Known boundary (/255 units): a band 10 <= eps <= 20 plus collapse from eps >= 34 - beta;
    seed 1 collapses one eps later at the band's lower edge."""
    return (10 + (seed == 1) <= eps <= 20) or eps >= 34 - beta


class OracleMethod(Method):
    """One plain training step per batch (the oracle evaluator decides CO)."""

    name = "oracle-method"

    def train_step(self, batch: Batch, ctx: StepContext) -> None:
        logits = ctx.model(batch.x)
        ctx.update(F.cross_entropy(logits, batch.y), logits, batch.y)


class OracleCO(Evaluator):
    """Reports ``co`` from :func:`oracle_co` of the cell's eps, beta and seed."""

    name = "co"

    def evaluate(self, model: nn.Module, ctx: EvalContext) -> dict[str, Any]:
        beta = ctx.injection.ctx.beta * 255
        return {"co": int(oracle_co(round(ctx.eps * 255, 6), round(beta, 6), ctx.seed))}


class OracleData(Dataset):
    """16 random 4x4 images: one training step per epoch."""

    name = "oracle-data"

    def load(self, ctx: DataContext) -> DataSplits:
        return tiny_splits(n_train=16, n_test=8, shape=(1, 4, 4))


class OracleModel(Model):
    """A linear classifier."""

    name = "oracle-model"

    def build(self, *, num_classes: int, image_shape: tuple[int, int, int]) -> nn.Module:
        c, h, w = image_shape
        return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, num_classes))


class TinyParts:
    """Plugin object: the tiny dataset, model and method (reusable by any test that needs a cheap cell)."""

    @hookimpl
    def register_datasets(self, register):
        register(OracleData)

    @hookimpl
    def register_models(self, register):
        register(OracleModel)

    @hookimpl
    def register_methods(self, register):
        register(OracleMethod)


class OracleVerdict:
    """Plugin object: the oracle ``co`` evaluator (unregister the built-in detector first)."""

    @hookimpl
    def register_evaluators(self, register):
        register(OracleCO)
