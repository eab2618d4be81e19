"""Dataset files are verified against torchvision's published MD5 sums before they are parsed,
and no pickle from --data-dir is ever loaded with the unrestricted unpickler."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import pytest

from cobench.api import DataContext
from cobench.datasets.integrity import ChecksumError, md5_of
from cobench.errors import CobenchError

from . import formats


class WritesMarker:
    """Unpickling this object runs code: it writes a marker file (the attack of the issue)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('code ran')",)


def load(pm, name: str, data_dir: Path, **params):
    return pm.registry.get("datasets", name)(**params).load(DataContext(data_dir=str(data_dir), download=False, seed=0))


def crafted_cifar(tmp_path: Path) -> tuple[Path, Path]:
    formats.write_cifar10(tmp_path)
    marker = tmp_path / "marker"
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "wb") as f:
        pickle.dump({"data": WritesMarker(marker), "labels": [0]}, f)
    return tmp_path, marker


def test_a_crafted_cifar_pickle_is_refused_by_checksum_before_it_is_read(pm, tmp_path):
    root, marker = crafted_cifar(tmp_path)
    with pytest.raises(
        ChecksumError,
        match=r"cifar10: '.*data_batch_1' does not match torchvision's published MD5 "
        r"\(expected c99cafc152244af753f735de768cd75f, got [0-9a-f]{32}\).*"
        r"verify_checksums=false",
    ):
        load(pm, "cifar10", root)
    assert not marker.exists()


def test_with_verification_off_the_crafted_pickle_still_runs_no_code(pm, tmp_path):
    root, marker = crafted_cifar(tmp_path)
    with pytest.raises(
        CobenchError,
        match=r"corrupt or unreadable \('.*data_batch_1' fails to parse\): "
        r"UnpicklingError: refusing global builtins.exec",
    ):
        load(pm, "cifar10", root, verify_checksums=False)
    assert not marker.exists()


def test_files_with_the_published_checksums_load(pm, tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    formats.write_cifar10(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    monkeypatch.setattr(
        tvd.CIFAR10, "train_list", [[f"data_batch_{i}", md5_of(folder / f"data_batch_{i}")] for i in range(1, 6)]
    )
    monkeypatch.setattr(tvd.CIFAR10, "test_list", [["test_batch", md5_of(folder / "test_batch")]])
    data = load(pm, "cifar10", tmp_path)
    assert data.train_x.shape == (20, 3, 32, 32)
    raw = bytearray((folder / "test_batch").read_bytes())
    raw[-10] ^= 1  # one bit of one pixel
    (folder / "test_batch").write_bytes(bytes(raw))
    with pytest.raises(ChecksumError, match="test_batch' does not match"):
        load(pm, "cifar10", tmp_path)


def test_cifar100_and_svhn_are_verified_too(pm, tmp_path):
    formats.write_cifar100(tmp_path / "c")
    with pytest.raises(ChecksumError, match=r"cifar100: '.*cifar-100-python/train' does not match"):
        load(pm, "cifar100", tmp_path / "c")
    formats.write_svhn(tmp_path / "s")
    with pytest.raises(
        ChecksumError,
        match=r"svhn: '.*train_32x32.mat' does not match .* "
        r"--param datasets.svhn.verify_checksums=false",
    ):
        load(pm, "svhn", tmp_path / "s")


def test_mnist_archives_are_verified_and_plain_files_must_match_them(pm, tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    formats.write_mnist(tmp_path / "plain")
    with pytest.raises(
        ChecksumError,
        match=r"mnist: '.*train-images-idx3-ubyte' cannot be verified: torchvision "
        r"publishes MD5 sums for the archive 'train-images-idx3-ubyte.gz' only",
    ):
        load(pm, "mnist", tmp_path / "plain")
    formats.write_mnist(tmp_path / "gz", gz=True)
    raw = tmp_path / "gz" / "MNIST" / "raw"
    with pytest.raises(ChecksumError, match="train-images-idx3-ubyte.gz' does not match"):
        load(pm, "mnist", tmp_path / "gz")
    monkeypatch.setattr(tvd.MNIST, "resources", [(p.name, md5_of(p)) for p in sorted(raw.glob("*.gz"))])
    assert load(pm, "mnist", tmp_path / "gz").train_x.shape == (20, 1, 28, 28)  # decompressed next to the archives
    plain = raw / "t10k-labels-idx1-ubyte"
    plain.write_bytes(
        gzip.decompress((raw / "t10k-labels-idx1-ubyte.gz").read_bytes())[:-1] + b"\x03"
    )  # last label 9 -> 3
    with pytest.raises(ChecksumError, match="t10k-labels-idx1-ubyte' differs from the decompressed content"):
        load(pm, "mnist", tmp_path / "gz")
