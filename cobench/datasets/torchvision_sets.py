"""Datasets read through torchvision from ``--data-dir`` in their standard on-disk formats."""
from __future__ import annotations

import numpy as np
import torch

from cobench import hookimpl
from cobench.api import DataContext, DataSplits, Dataset
from cobench.errors import CobenchError


def to_tensor_images(data: np.ndarray | torch.Tensor, channels_last: bool = True) -> torch.Tensor:
    """uint8 images (N, H, W, C) or (N, H, W) -> float32 (N, C, H, W) in [0, 1]."""
    t = torch.as_tensor(np.asarray(data))
    if t.ndim == 3:
        t = t[:, None]
    elif channels_last:
        t = t.permute(0, 3, 1, 2)
    return t.contiguous().float().div_(255.0)


def open_torchvision(cls, ctx: DataContext, label: str, **kwargs):
    try:
        return cls(root=ctx.data_dir, download=ctx.download, **kwargs)
    except (RuntimeError, OSError, ValueError, EOFError) as exc:
        hint = "" if ctx.download else " (pass --download to fetch it where the network allows)"
        raise CobenchError(
            f"cannot read {label} from data dir {ctx.data_dir!r}: {exc}{hint}"
        ) from None
    except Exception as exc:  # pickle errors and friends from a corrupt file
        raise CobenchError(f"{label} files in {ctx.data_dir!r} are corrupt or unreadable: {type(exc).__name__}: {exc}") from None


class CIFAR10(Dataset):
    """CIFAR-10 (32x32 RGB, 10 classes) from --data-dir (cifar-10-batches-py/); crop+flip augmentation."""

    name = "cifar10"
    num_classes = 10
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2471, 0.2435, 0.2616)

    def __init__(self, augment: bool = True):
        self.augment = augment

    def tv_class(self):
        from torchvision.datasets import CIFAR10 as TV

        return TV

    def load(self, ctx: DataContext) -> DataSplits:
        cls = self.tv_class()
        train = open_torchvision(cls, ctx, self.name, train=True)
        test = open_torchvision(cls, ctx, self.name, train=False)
        return DataSplits(
            to_tensor_images(train.data), torch.as_tensor(train.targets, dtype=torch.long),
            to_tensor_images(test.data), torch.as_tensor(test.targets, dtype=torch.long),
            self.num_classes, self.mean, self.std,
            crop_padding=4 if self.augment else 0, flip=self.augment,
        )


@hookimpl
def register_datasets(register):
    register(CIFAR10)
