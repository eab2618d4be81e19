"""Datasets are cached as uint8 where that is lossless; every consumer still sees the same float32."""

from __future__ import annotations

import torch

from cobench.api import DataContext
from cobench.options import RunOptions
from cobench.params import ComponentSpec
from cobench.run.dataset_cache import _load_dataset, dataset_fingerprint, load_dataset
from cobench.run.placement import as_uint8
from cobench.store.provenance import fingerprint
from tests.data.formats import write_cifar10


def test_image_datasets_are_cached_as_uint8_and_read_back_bit_for_bit(pm, tmp_path):
    write_cifar10(tmp_path, n_train=30, n_test=10)
    spec = ComponentSpec("cifar10", {"verify_checksums": False})
    options = RunOptions(data_dir=str(tmp_path))
    raw = pm.registry.get("datasets", "cifar10")(verify_checksums=False).load(
        DataContext(data_dir=str(tmp_path), download=False, seed=0)
    )
    _load_dataset.cache_clear()
    data = load_dataset(spec, options)
    cached = _load_dataset(spec, str(tmp_path), False)  # what the process keeps
    assert cached.train_x.dtype == cached.test_x.dtype == torch.uint8  # a quarter of the memory
    assert data.train_x.dtype == torch.float32 and torch.equal(data.train_x, raw.train_x)
    assert torch.equal(data.test_x, raw.test_x)
    # the provenance fingerprint is that of the float arrays, as before: stored results stay valid
    assert dataset_fingerprint(spec, options) == fingerprint(raw.train_x, raw.train_y, raw.test_x, raw.test_y)


def test_values_that_are_not_k_over_255_stay_float(pm):
    assert as_uint8(torch.tensor([0.0, 0.5, 1.0])) is None  # 0.5 is not k/255
    assert as_uint8(torch.tensor([0.0, 1 / 255 + 1e-7])) is None
    exact = torch.arange(256, dtype=torch.float32).div_(255.0)
    assert torch.equal(as_uint8(exact), torch.arange(256, dtype=torch.uint8))
    _load_dataset.cache_clear()
    load_dataset(ComponentSpec("digits"), RunOptions())  # upsampled digits: not k/255
    digits = _load_dataset(ComponentSpec("digits"), "data", False)
    assert digits.train_x.dtype == torch.float32
