"""Any ``.npz`` file: ``npz:PATH`` with arrays x_train, y_train, x_test, y_test.

Images may be (N, H, W) greyscale, (N, H, W, C) or (N, C, H, W) with C in {1, 3, 4}; the
layout is detected from where the small channel axis is (``layout="nhwc"``/``"nchw"``
settles an ambiguous shape such as (N, 3, 4, 3)). Values: uint8 in 0..255 (or any integer
type within 0..255) are divided by 255; floats must already be in [0, 1]. Labels are
integers 0..K-1, shape (N,) or (N, 1); K is the largest label + 1 unless ``num_classes``
is given. A relative PATH is looked up from the working directory, then under ``--data-dir``.
"""

from __future__ import annotations

import zipfile

import numpy as np
import torch

from cobench import hookimpl
from cobench.api import DataContext, Dataset, DataSplits
from cobench.datasets.common import channel_stats, resolve_path
from cobench.errors import CobenchError, ConfigError

KEYS = ("x_train", "y_train", "x_test", "y_test")
LAYOUTS = ("auto", "nhwc", "nchw")


def images_to_tensor(x: np.ndarray, layout: str, where: str) -> torch.Tensor:
    """Images of any supported layout/dtype -> float32 (N, C, H, W) in [0, 1]."""
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        last, second = x.shape[-1] in (1, 3, 4), x.shape[1] in (1, 3, 4)
        if layout == "auto":
            if last and second:
                raise CobenchError(
                    f"{where}: cannot tell channels-first from channels-last for shape {x.shape}; "
                    "pass layout=nhwc or layout=nchw"
                )
            if not (last or second):
                raise CobenchError(
                    f"{where}: shape {x.shape} has no channel axis of size 1, 3 or 4 "
                    "(expected (N,H,W), (N,H,W,C) or (N,C,H,W))"
                )
            layout = "nhwc" if last else "nchw"
        if layout == "nhwc":
            x = x.transpose(0, 3, 1, 2)
    else:
        raise CobenchError(f"{where}: images must be (N,H,W), (N,H,W,C) or (N,C,H,W), got shape {x.shape}")
    if x.dtype == np.uint8:
        t = torch.from_numpy(np.ascontiguousarray(x)).float().div_(255.0)
    elif np.issubdtype(x.dtype, np.integer):
        if x.min() < 0 or x.max() > 255:
            raise CobenchError(f"{where}: integer images must be within 0..255, found {x.min()}..{x.max()}")
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).div_(255.0)
    elif np.issubdtype(x.dtype, np.floating):
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        if not torch.isfinite(t).all() or t.min() < 0 or t.max() > 1:
            raise CobenchError(
                f"{where}: float images must be finite and in [0, 1], found {t.min().item():g}..{t.max().item():g} "
                "(store uint8 0..255, or divide by 255)"
            )
    else:
        raise CobenchError(f"{where}: unsupported image dtype {x.dtype} (use uint8 or float in [0, 1])")
    return t


def labels_to_tensor(y: np.ndarray, n: int, where: str) -> torch.Tensor:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != n:
        raise CobenchError(f"{where}: labels must have shape ({n},), got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0):
            y = y.astype(np.int64)
        else:
            raise CobenchError(f"{where}: labels must be integers, got dtype {y.dtype}")
    return torch.from_numpy(y.astype(np.int64))


class NpzDataset(Dataset):
    """Any .npz with x_train/y_train/x_test/y_test (npz:PATH; uint8 or [0,1] float, NHWC, NCHW or NHW)."""

    name = "npz"
    ranges = {"num_classes": ">= 0"}
    spec_arg = "path"

    def __init__(
        self,
        path: str | None = None,
        layout: str = "auto",
        num_classes: int = 0,
        augment: bool = False,
        crop_padding: int = -1,
        flip: bool = True,
    ):
        if layout not in LAYOUTS:
            raise ConfigError(f"npz: layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        self.path, self.layout, self.num_classes = path, layout, num_classes
        self.augment, self.crop_padding, self.flip = augment, crop_padding, flip

    def load(self, ctx: DataContext) -> DataSplits:
        if not self.path:
            raise ConfigError("npz needs a path: write npz:PATH")
        path = resolve_path(self.path, ctx.data_dir)
        if not path.is_file():
            raise CobenchError(
                f"cannot read npz {str(path)!r}: no such file (expected a .npz with arrays {', '.join(KEYS)})"
            )
        try:
            with np.load(path, allow_pickle=False) as f:
                missing = [k for k in KEYS if k not in f.files]
                if missing:
                    raise CobenchError(
                        f"npz {str(path)!r} lacks array(s) {', '.join(missing)}; it has {', '.join(f.files) or 'none'} "
                        f"(expected {', '.join(KEYS)})"
                    )
                arrays = {k: f[k] for k in KEYS}
        except CobenchError:
            raise
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
            raise CobenchError(
                f"npz {str(path)!r} is corrupt or not a .npz file ({type(exc).__name__}: {exc}); "
                f"write it with numpy.savez(path, {'=..., '.join(KEYS)}=...)"
            ) from None
        where = f"npz {str(path)!r}"
        empty = [f"x_{split}" for split in ("train", "test") if arrays[f"x_{split}"].size == 0]
        if empty:
            raise CobenchError(f"{where}: {' and '.join(empty)} has no images; both splits need at least one")
        xs, ys = [], []
        for split in ("train", "test"):
            x = images_to_tensor(arrays[f"x_{split}"], self.layout, f"{where} x_{split}")
            xs.append(x)
            ys.append(labels_to_tensor(arrays[f"y_{split}"], len(x), f"{where} y_{split}"))
        if xs[0].shape[1:] != xs[1].shape[1:]:
            raise CobenchError(
                f"{where}: x_train images are {tuple(xs[0].shape[1:])} but x_test images are {tuple(xs[1].shape[1:])}"
            )
        k = self.num_classes or int(max(ys[0].max(), ys[1].max())) + 1
        if not self.num_classes:
            absent = sorted(set(range(k)) - set(ys[0].unique().tolist()))
            if absent:  # an inferred class count must be dense, else one stray label makes a huge model
                shown = ", ".join(map(str, absent[:5])) + (f" and {len(absent) - 5} more" if len(absent) > 5 else "")
                raise CobenchError(
                    f"{where}: labels must be dense 0..K-1 with every class in y_train; inferred "
                    f"K = {k} from the largest label but classes {shown} never occur "
                    "(relabel, or set num_classes)"
                )
        lo, hi = min(int(y.min()) for y in ys), max(int(y.max()) for y in ys)
        if lo < 0 or hi >= k:
            raise CobenchError(f"{where}: labels must be in 0..{k - 1}, found {lo}..{hi}")
        mean, std = channel_stats(xs[0])
        h = xs[0].shape[-1]
        padding = (max(1, h // 8) if self.crop_padding < 0 else self.crop_padding) if self.augment else 0
        return DataSplits(
            xs[0], ys[0], xs[1], ys[1], k, mean, std, crop_padding=padding, flip=self.flip and self.augment
        )


@hookimpl
def register_datasets(register):
    register(NpzDataset)
