"""A dataset file that would train nonsense fails when loaded, naming the file (issue 12, Inputs)."""

from __future__ import annotations

import numpy as np
import pytest

from cobench.api import DataContext
from cobench.datasets.npz import NpzDataset
from cobench.errors import CobenchError


def write(path, y_train, n_test=4, n_train=None):
    n_train = len(y_train) if n_train is None else n_train
    np.savez(
        path,
        x_train=np.zeros((n_train, 6, 6), np.float32),
        y_train=np.asarray(y_train, np.int64),
        x_test=np.zeros((n_test, 6, 6), np.float32),
        y_test=np.zeros(n_test, np.int64),
    )
    return path


def load(path, **params):
    return NpzDataset(path=str(path), **params).load(DataContext(data_dir=".", download=False, seed=0))


def test_a_label_of_a_million_is_refused_naming_the_file(tmp_path):
    path = write(tmp_path / "big.npz", [0, 1, 2, 10**6])
    with pytest.raises(CobenchError) as info:
        load(path)
    assert "big.npz" in info.value.message and "dense" in info.value.message and "K = 1000001" in info.value.message


def test_dense_labels_load(tmp_path):
    assert load(write(tmp_path / "ok.npz", [0, 1, 2, 1])).num_classes == 3


def test_an_empty_train_split_is_named(tmp_path):
    path = write(tmp_path / "empty.npz", [], n_train=0)
    with pytest.raises(CobenchError) as info:
        load(path)
    assert "empty.npz" in info.value.message and "x_train has no images" in info.value.message
