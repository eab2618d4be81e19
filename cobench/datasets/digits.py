"""The embedded default dataset: scikit-learn's bundled handwritten digits (no download)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cobench import hookimpl
from cobench.api import DataContext, Dataset, DataSplits
from cobench.errors import ConfigError


class Digits(Dataset):
    """scikit-learn's 1,797 8x8 handwritten digits, upsampled to 16x16 grey in [0,1]; 10 classes, bundled."""

    name = "digits"
    ranges = {"size": ">= 4", "test_fraction": ("> 0", "< 1")}

    def __init__(self, size: int = 16, test_fraction: float = 0.25, augment: bool = False):
        self.size = size
        self.test_fraction = test_fraction
        self.augment = augment  # random crop (padding size // 8), never flips: digits are not mirror-symmetric

    def load(self, ctx: DataContext) -> DataSplits:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        x = torch.tensor(bunch.images, dtype=torch.float32)[:, None] / 16.0
        if self.size != 8:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False).clamp(0, 1)
        y = torch.tensor(bunch.target, dtype=torch.long)
        # a fixed split, independent of the cell's seed, so every seed is scored on the same test set
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
        n_test = int(round(len(x) * self.test_fraction))
        test, train = perm[:n_test], perm[n_test:]
        if len(test) == 0 or len(train) < 2:
            raise ConfigError(
                f"datasets.digits.test_fraction = {self.test_fraction!r} leaves {len(train)} training and "
                f"{len(test)} test images of {len(x)}; choose a fraction that leaves both (e.g. 0.25)"
            )
        mean, std = x[train].mean().item(), x[train].std().item()
        return DataSplits(
            x[train],
            y[train],
            x[test],
            y[test],
            10,
            (mean,),
            (std,),
            crop_padding=max(1, self.size // 8) if self.augment else 0,
            flip=False,
        )


@hookimpl
def register_datasets(register):
    register(Digits)
