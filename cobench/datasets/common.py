"""Helpers shared by the dataset plugins (not a plugin itself)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch


def to_tensor_images(data: np.ndarray | torch.Tensor, channels_last: bool = True) -> torch.Tensor:
    """uint8 images (N, H, W, C) or (N, H, W) -> float32 (N, C, H, W) in [0, 1]."""
    t = torch.as_tensor(np.asarray(data))
    if t.ndim == 3:
        t = t[:, None]
    elif channels_last:
        t = t.permute(0, 3, 1, 2)
    return t.contiguous().float().div_(255.0)


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of (N, C, H, W) images; std floored so constant channels still normalise."""
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)) if x.numel() > x.shape[1] else torch.ones(x.shape[1])
    return tuple(mean.tolist()), tuple(max(s, 1e-3) for s in std.tolist())


def resolve_path(path: str, data_dir: str) -> Path:
    """An absolute path as is; a relative one from the working directory, else under ``data_dir``."""
    p = Path(os.path.expanduser(path))
    if p.is_absolute() or p.exists():
        return p
    under = Path(data_dir) / p
    return under if under.exists() else p
