"""Device selection and seeding."""
from __future__ import annotations

import random

import numpy as np
import torch

from .errors import ConfigError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
#: the device names cobench trains on, as error messages list them
VALID_DEVICES = "auto, cpu, cuda, cuda:N or mps"


def parse_device(name: str) -> torch.device | None:
    """The device ``name`` names (``None`` for ``auto``), checked for form only: a device type
    cobench trains on (``meta``, ``xla`` and the like are refused) and no index on ``cpu``/``mps``.
    The one place a ``--device`` string is parsed; :func:`resolve_device` adds availability."""
    text = str(name).strip()
    if text == "auto":
        return None
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise ConfigError(f"unknown device {name!r}; valid: {VALID_DEVICES}") from None
    if device.type not in DEVICE_CHOICES:
        raise ConfigError(f"device {name!r} is not one cobench trains on; valid: {VALID_DEVICES}")
    if device.type != "cuda" and device.index not in (None, 0):
        raise ConfigError(f"device {name!r}: {device.type} has no device {device.index}; write --device {device.type}")
    return device


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then CPU; ``cuda:1`` style names are accepted.
    A device that is not there (CUDA or MPS unavailable, ``cuda:N`` beyond the GPUs) is a
    :class:`ConfigError` naming what is."""
    device = parse_device(name)
    if device is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} requested but CUDA is not available here; use --device auto or cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                              f"cuda:0..cuda:{torch.cuda.device_count() - 1}")
    if device.type == "mps" and not _mps_available():
        raise ConfigError(f"device {name!r} requested but Apple MPS is not available here; use --device auto or cpu")
    return torch.device("cpu") if device.type == "cpu" else device


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
