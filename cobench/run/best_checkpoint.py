"""Best and last checkpoints: a validation split held out of the training set (``training.val_size``).

Early stopping is the classic defence against catastrophic overfitting (Wong, Rice & Kolter,
ICLR 2020, ``train_fgsm.py --early-stop``; Rice, Wong & Kolter, ICML 2020), and the CO papers
report both the early-stopped and the last model. With ``val_size = N > 0`` a cell:

* holds N training images out (:func:`split_validation`: a permutation of the training set drawn
  from a generator seeded with the cell's seed; the model never trains on them) and records the
  split in its result (``provenance.data.validation``: size, seed, SHA-256 of the held-out indices);
* measures, after every epoch, PGD accuracy on them (:class:`BestCheckpoint`: ``VAL_STEPS`` steps
  of eps/4 from a uniform start, one restart, the model in eval mode, the injection applied as on
  the test set), recorded per epoch as ``val_pgd_acc``; it keeps the weights of the epoch with the
  highest one (a later epoch replaces it only when strictly better, as ELLE's ``train.py``
  ``if val_adv_acc > val_best``);
* evaluates the last model (the usual metrics) and then the best one with the same evaluators,
  whose accuracies are stored as ``best_<metric>`` with ``best_epoch``.

References: LIONS-EPFL/ELLE ``core/data/cifar10.py`` (``split=1024``: 1,024 training images held
out), ``train.py`` (``val_best.pt`` on validation robust accuracy) and ``eval_pgd50-10.py`` /
``eval_aa.py`` (``--early_stopping True`` loads ``val_best.pt``); val-iisc/GAMA-GAT
``GAT_cifar10.py`` (49k/1k split, best epoch on val IFGSM-7). What knowingly differs: ELLE's split
is a fixed index range and its validation attack is its Trainer's PGD; GAT selects on IFGSM-7; Wong's
``--early-stop`` checks one training batch with PGD-5. cobench's split and attack are the above.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping
from dataclasses import replace
from typing import TypedDict, TypeVar

import torch
from torch import Tensor, nn

from cobench.api import DataSplits, Injection
from cobench.attacks import pgd_until_fooled
from cobench.errors import ConfigError
from cobench.run.evaluation import evaluation_mode
from cobench.run.placement import decode
from cobench.store.records import ValidationRecord

V = TypeVar("V")

#: PGD steps of the per-epoch validation attack (step eps/4, one restart)
VAL_STEPS = 10


def split_validation(data: DataSplits, val_size: int, seed: int) -> tuple[DataSplits, Tensor, Tensor, ValidationRecord]:
    """(training data without the held-out images, their images, their labels, the split's record)."""
    n = len(data.train_x)
    if not 0 < val_size < n:
        raise ConfigError(
            f"training.val_size = {val_size}: expected between 1 and {n - 1} (the training set has {n} images)"
        )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    held, kept = perm[:val_size].sort().values, perm[val_size:].sort().values
    record: ValidationRecord = {
        "size": val_size,
        "of": n,
        "seed": seed,
        "indices_sha256": hashlib.sha256(held.numpy().astype("<i8").tobytes()).hexdigest(),
    }
    dev = data.train_x.device
    held, kept = held.to(dev), kept.to(dev)
    train = replace(data, train_x=data.train_x[kept], train_y=data.train_y[kept])
    return train, decode(data.train_x[held]), data.train_y[held], record


class BestState(TypedDict):
    """What a mid-cell checkpoint keeps of a :class:`BestCheckpoint`."""

    best_acc: float
    best_epoch: int | None
    state: dict[str, Tensor] | None


class BestCheckpoint:
    """The weights of the epoch with the best PGD accuracy on the held-out validation images."""

    def __init__(self, val_x: Tensor, val_y: Tensor, injection: Injection, eps: float, batch_size: int, seed: int):
        self.x, self.y = injection.apply(val_x, val_y), val_y
        self.eps, self.batch_size, self.seed = eps, batch_size, seed
        self.best_acc: float = -1.0
        self.best_epoch: int | None = None
        self.state: dict[str, Tensor] | None = None

    def accuracy(self, model: nn.Module) -> float:
        g = torch.Generator(device=self.x.device).manual_seed(self.seed + 2)
        correct = 0
        with evaluation_mode(model):
            for i in range(0, len(self.x), self.batch_size):
                xb, yb = self.x[i : i + self.batch_size], self.y[i : i + self.batch_size]
                delta = pgd_until_fooled(
                    model, xb, yb, self.eps, alpha=self.eps / 4, steps=VAL_STEPS, restarts=1, generator=g
                )
                with torch.no_grad():
                    correct += (model(xb + delta).argmax(1) == yb).sum().item()
        return correct / len(self.x)

    def observe(self, model: nn.Module, epoch: int) -> float:
        """Validation PGD accuracy after ``epoch``; keeps the weights when strictly better than so far."""
        acc = self.accuracy(model)
        if acc > self.best_acc:
            self.best_acc, self.best_epoch = acc, epoch
            self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return acc

    def state_dict(self) -> BestState:
        return BestState(best_acc=self.best_acc, best_epoch=self.best_epoch, state=self.state)

    def load_state_dict(self, saved: BestState) -> None:
        self.best_acc, self.best_epoch, self.state = saved["best_acc"], saved["best_epoch"], saved["state"]

    def best_model(self, model: nn.Module) -> nn.Module:
        """A copy of ``model`` holding the best epoch's weights."""
        best = copy.deepcopy(model)
        if self.state is not None:
            best.load_state_dict(self.state)
        return best


def best_metrics(metrics: Mapping[str, V], best_epoch: int | None) -> dict[str, V | int | None]:
    """The best model's accuracies as ``best_<metric>``, and ``best_epoch``."""
    out: dict[str, V | int | None] = {f"best_{k}": v for k, v in metrics.items() if k.endswith("_acc")}
    out["best_epoch"] = best_epoch
    return out
