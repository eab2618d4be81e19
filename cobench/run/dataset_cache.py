"""A dataset component's splits, loaded once per process and kept compactly.

The driver loads each dataset of a grid before any cell starts (a broken dataset fails the run,
not every cell), and an in-process worker then reuses that copy: the cache is keyed by the
dataset's spec, data folder and download flag, and keeps images as uint8 where that is lossless
(a quarter of the memory of float32)."""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

from cobench.api import DataContext, DataSplits
from cobench.errors import CobenchError
from cobench.options import RunOptions
from cobench.params import ComponentSpec
from cobench.plugins import get_plugin_manager
from cobench.run.placement import as_uint8, decode
from cobench.store.provenance import fingerprint

#: the smallest image side a dataset may have
MIN_IMAGE_SIDE = 4


def compact(data: DataSplits) -> DataSplits:
    """``data`` with each image split kept as uint8 where that is lossless (a quarter of the memory)."""
    train, test = as_uint8(data.train_x), as_uint8(data.test_x)
    return replace(data, train_x=data.train_x if train is None else train, test_x=data.test_x if test is None else test)


def expand(data: DataSplits) -> DataSplits:
    """The float32 splits in [0, 1] every consumer sees (bit for bit what the dataset returned)."""
    return replace(data, train_x=decode(data.train_x), test_x=decode(data.test_x))


@lru_cache(maxsize=4)
def _load_dataset(spec: ComponentSpec, data_dir: str, download: bool) -> DataSplits:
    """A dataset's splits as cached in this process: uint8 where lossless (:func:`compact`), so the
    cached copy takes a quarter of the memory of float32 images."""
    cls = get_plugin_manager().registry.get("datasets", spec.name)
    return compact(cls(**spec.kwargs()).load(DataContext(data_dir=data_dir, download=download, seed=0)))


def clear_cache() -> None:
    """Drop this process's cached splits (the driver, once the cells load their own where they run)."""
    _load_dataset.cache_clear()


def load_dataset(spec: ComponentSpec, options: RunOptions) -> DataSplits:
    """Load (and cache in-process, compactly) a dataset component's splits; float32 on the CPU, with checks."""
    return expand(load_compact(spec, options))


def load_compact(spec: ComponentSpec, options: RunOptions) -> DataSplits:
    """A dataset component's splits as this process caches them (images uint8 where lossless, see
    :func:`compact`), checked: for whatever needs only shapes, or places the data itself."""
    data = _load_dataset(spec, options.data_dir, options.download)
    name = dataset_name(spec, options.data_dir)
    for split in ("train", "test"):
        x, y = getattr(data, f"{split}_x"), getattr(data, f"{split}_y")
        if x.ndim != 4 or len(x) != len(y) or len(x) == 0:
            raise CobenchError(
                f"dataset {name} returned a malformed {split} split: x {tuple(x.shape)}, y {tuple(y.shape)}"
            )
    if data.num_classes < 2:
        raise CobenchError(f"dataset {name} has {data.num_classes} class(es); classification needs at least 2")
    if len(data.train_x) < 2:
        raise CobenchError(f"dataset {name} has {len(data.train_x)} training image(s); training needs at least 2")
    if min(data.train_x.shape[-2:]) < MIN_IMAGE_SIDE:
        raise CobenchError(
            f"dataset {name} has {data.train_x.shape[-2]}x{data.train_x.shape[-1]}-pixel images; "
            f"cobench needs at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} (the injections' carriers need "
            "frequencies, attacks need pixels)"
        )
    return data


def dataset_name(spec: ComponentSpec, data_dir: str) -> str:
    """The dataset as an error names it: ``'npz' read from '/data/x.npz'`` for one read from a
    file or folder (a ``path`` parameter: ``npz``, ``imagefolder``), else its quoted name."""
    from cobench.datasets.common import resolve_path

    path = spec.params.get("path")
    if isinstance(path, str) and path:
        return f"{spec.name!r} read from {str(resolve_path(path, data_dir))!r}"
    return repr(spec.name)


@lru_cache(maxsize=4)
def _dataset_fingerprint(spec: ComponentSpec, data_dir: str, download: bool) -> str:
    data = expand(_load_dataset(spec, data_dir, download))  # the float arrays, as before compaction
    return fingerprint(data.train_x, data.train_y, data.test_x, data.test_y)


def dataset_fingerprint(spec: ComponentSpec, options: RunOptions) -> str:
    """SHA-256 of the dataset's arrays as loaded (before injection), cached like the dataset."""
    return _dataset_fingerprint(spec, options.data_dir, options.download)
