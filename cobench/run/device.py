"""Device selection, seeding, and the backends' numerics (determinism, fp32 precision)."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np
import torch

from cobench.errors import ConfigError
from cobench.store.records import NumericsRecord

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
            raise ConfigError(
                f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                f"cuda:0..cuda:{torch.cuda.device_count() - 1}"
            )
    if device.type == "mps" and not _mps_available():
        raise ConfigError(f"device {name!r} requested but Apple MPS is not available here; use --device auto or cpu")
    return torch.device("cpu") if device.type == "cpu" else device


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# --------------------------------------------------------------------------- numerics: determinism and fp32 precision
#: the fp32 precision switches of PyTorch's backends (torch >= 2.9): "ieee" is true fp32, "tf32"
#: (cuDNN convolutions' default on Ampere and newer) and "bf16" trade precision for speed, "none"
#: defers to ``torch.backends.fp32_precision``
FP32_PRECISION_FLAGS = (
    ("cudnn_conv", ("cudnn", "conv")),
    ("cudnn_rnn", ("cudnn", "rnn")),
    ("cuda_matmul", ("cuda", "matmul")),
    ("mkldnn", ("mkldnn",)),
)
#: the cuBLAS workspace setting deterministic CUDA matmuls need (read when cuBLAS starts)
CUBLAS_WORKSPACE = ":4096:8"


class Fp32Setting(Protocol):
    """A backend's fp32 precision switch (``torch.backends.cudnn.conv``, ``torch.backends.cuda.matmul``, ...)."""

    fp32_precision: str


def _precision_owners() -> dict[str, Fp32Setting]:
    owners = {}
    for name, path in FP32_PRECISION_FLAGS:
        obj: Any = torch.backends
        for part in path:
            obj = getattr(obj, part, None)
        if obj is not None and hasattr(obj, "fp32_precision"):
            owners[name] = obj
    return owners


def fp32_precision() -> dict[str, str]:
    """Each backend's fp32 precision setting, by name (``cudnn_conv``: ``tf32`` under PyTorch's defaults)."""
    return {name: str(obj.fp32_precision) for name, obj in _precision_owners().items()}


def _cudnn_allow_tf32() -> bool | None:
    """cuDNN's legacy TF32 switch, or None where it cannot be read (a caller mixed the APIs)."""
    try:
        return bool(torch.backends.cudnn.allow_tf32)
    except RuntimeError:
        return None


@contextlib.contextmanager
def true_fp32() -> Iterator[None]:
    """Every backend in IEEE fp32 (no TF32, no bf16 inside fp32 ops), restored afterwards: evaluation
    always runs in true fp32, so "fp32" accuracies mean the same on every GPU generation.

    cuDNN's legacy ``allow_tf32`` is switched off too: PyTorch (2.14) checks that it agrees with the
    conv and RNN precisions whenever anything reads ``torch.backends.cudnn.allow_tf32``, and raises
    ("a mix of the legacy and new APIs") when they differ, so a library reading it during
    evaluation would crash. The legacy switch goes first: setting it resets the per-op ones."""
    owners = _precision_owners()
    before = {name: obj.fp32_precision for name, obj in owners.items()}
    legacy = _cudnn_allow_tf32()
    try:
        torch.backends.cudnn.allow_tf32 = False
        for obj in owners.values():
            obj.fp32_precision = "ieee"
        yield
    finally:
        if legacy is not None:
            torch.backends.cudnn.allow_tf32 = legacy
        for name, obj in owners.items():
            obj.fp32_precision = before[name]


def configure_numerics(deterministic: bool, benchmark: bool = False) -> None:
    """Set the backends for one cell: cuDNN autotuning off unless ``benchmark`` opts in (it picks
    kernels by timing, so two runs may differ in the last bits; recorded in each result); with
    ``deterministic``, deterministic algorithms everywhere (ops that have none warn, naming
    themselves), deterministic cuDNN and the cuBLAS workspace that makes CUDA matmuls
    reproducible. Training keeps PyTorch's fp32 precision defaults (TF32 convolutions on Ampere
    and newer); evaluation always runs in true fp32 (:func:`true_fp32`)."""
    if deterministic and benchmark:
        raise ConfigError("cudnn_benchmark picks kernels by timing them, which deterministic rules out")
    torch.backends.cudnn.benchmark = benchmark
    torch.backends.cudnn.deterministic = deterministic
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    if deterministic:  # effective only before cuBLAS starts in this process (the CLI sets it at once)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)


def numerics_record() -> NumericsRecord:
    """What the numbers of a run depend on beyond its config: the determinism switches and the
    fp32 precision of training (evaluation: always ``ieee``)."""
    return {
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        "train_fp32_precision": fp32_precision(),
        "eval_fp32_precision": "ieee",
    }
