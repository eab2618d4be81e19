"""Checking dataset files before they are parsed (not a plugin itself).

CIFAR batches are Python pickles, and unpickling runs whatever code the file names. Two
defences, used together by :mod:`cobench.datasets.torchvision_sets`:

* :func:`verify_md5` compares a file with the MD5 sum torchvision publishes for it (the sums
  in ``torchvision.datasets``' class attributes; computed with torchvision's own
  ``calculate_md5``) and refuses it, naming the file, before anything reads it;
* :func:`load_array_pickle` unpickles with an allow-list of the numpy globals an array
  needs, so even a file the user chose not to verify (a subset) cannot name ``os.system``.
"""

from __future__ import annotations

import gzip
import hashlib
import pickle
from pathlib import Path
from typing import Any

from cobench.errors import CobenchError

#: the globals a pickled numpy array (and a Python 2 pickle's byte strings) reference; nothing else
ARRAY_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }
)


class ChecksumError(CobenchError):
    """A dataset file that is not the file its publisher released."""


def md5_of(path: Path) -> str:
    from torchvision.datasets.utils import calculate_md5

    return calculate_md5(str(path))


def opt_out_hint(dataset: str) -> str:
    return (
        f"for a deliberate subset or re-packed copy, pass --param datasets.{dataset}.verify_checksums=false "
        "(pickles are then read with an arrays-only unpickler)"
    )


def verify_md5(dataset: str, path: Path, expected: str) -> None:
    """Raise :class:`ChecksumError` naming ``path`` unless its MD5 is ``expected``."""
    got = md5_of(path)
    if got != expected:
        raise ChecksumError(
            f"{dataset}: {str(path)!r} does not match torchvision's published MD5 (expected {expected}, got {got}), "
            f"so it was not loaded; replace it with the official file (or delete it and pass --download), or, "
            + opt_out_hint(dataset)
        )


def verify_gunzipped(dataset: str, plain: Path, archive: Path) -> None:
    """Raise unless ``plain`` is exactly the decompressed content of the (verified) ``archive``."""
    digest = hashlib.md5()
    with gzip.open(archive, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    if md5_of(plain) != digest.hexdigest():
        raise ChecksumError(
            f"{dataset}: {str(plain)!r} differs from the decompressed content of its verified archive "
            f"{str(archive)!r}, so it was not loaded; delete it (cobench decompresses the archive again), or, "
            + opt_out_hint(dataset)
        )


class ArrayUnpickler(pickle.Unpickler):
    """An unpickler that builds containers, strings, numbers and numpy arrays, and nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ARRAY_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing global {module}.{name}: a dataset pickle holds only arrays, lists, strings and numbers"
        )


def load_array_pickle(path: Path) -> Any:
    """Unpickle ``path`` (Python 2 byte strings decoded as latin-1, as CIFAR's are) with :class:`ArrayUnpickler`."""
    with open(path, "rb") as f:
        return ArrayUnpickler(f, encoding="latin1").load()
